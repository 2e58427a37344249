"""The inferline stack: one construct per capability, wired together, and its outputs."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Stack
from constructs import Construct

from inferline import contract
from inferline.clients import CLIENTS_ENV
from inferline.resources import UPLOADS_PREFIX
from inferline.spec import load_spec
from infra.api_routes import ApiRoutes
from infra.batch import Batch
from infra.config import Config
from infra.lambda_code import LambdaFunctions
from infra.monitoring import Monitoring
from infra.observability import Observability
from infra.online_api import OnlineApi, client_construct_id
from infra.retraining import Retraining
from infra.serving import Serving
from infra.storage import Storage


class InferlineStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs) -> None:
        super().__init__(
            scope,
            construct_id,
            description="inferline: serverless ML serving, monitoring and retraining (API Gateway, "
            "Step Functions, Lambda, SageMaker, DynamoDB, S3, SQS, SES)",
            **kwargs,
        )
        self.config = config
        self.storage = Storage(self, "Storage", config=config)
        self.serving = Serving(self, "Serving", config=config, storage=self.storage)
        # One code asset and layer for every Lambda, online and batch.
        lambdas = LambdaFunctions(self, "Lambdas", config=config)
        self.online_api = OnlineApi(
            self, "OnlineApi", config=config, storage=self.storage, serving=self.serving,
            lambdas=lambdas,
        )
        self.batch = Batch(
            self, "Batch", config=config, storage=self.storage, serving=self.serving,
            lambdas=lambdas,
        )
        # Submit checks a job's notify address against the caller's client's recipients.
        self.batch.submit.add_environment(CLIENTS_ENV, self.online_api.clients_variable())
        # The API's routes: the contract's paths, each wired to what serves it.
        self.api_routes = ApiRoutes(
            self, "ApiRoutes", api=self.online_api.api, specs=[load_spec(m) for m in config.models],
            wiring={
                contract.PREDICT: self.online_api.predict_wiring,
                contract.FEEDBACK: self.online_api.feedback_wiring,
                contract.SUBMIT_BATCH_JOB: self.batch.submit_wiring,
                contract.GET_BATCH_JOB: self.batch.status_wiring,
            },
        )
        self.retraining = Retraining(
            self, "Retraining", config=config, storage=self.storage, serving=self.serving,
            lambdas=lambdas,
        )
        # Monitoring starts retraining when a model drifts or its quality drops.
        self.monitoring = Monitoring(
            self, "Monitoring", config=config, storage=self.storage, serving=self.serving,
            retraining=self.retraining, lambdas=lambdas,
        )
        self.observability = Observability(
            self, "Observability", config=config, serving=self.serving,
            online_api=self.online_api, batch=self.batch, retraining=self.retraining,
            monitoring=self.monitoring,
        )

        api = self.online_api
        CfnOutput(self, "ApiUrl", value=api.url,
                  description="Base URL: POST <ApiUrl>v1/models/<model>/predict (INFERLINE_API_URL)")
        first = config.clients[0].name
        CfnOutput(self, "ApiKeyId", value=api.api_key.key_id,
                  description=f"API key id of client {first} (the first); its value is the x-api-key "
                  "header (INFERLINE_API_KEY)")
        CfnOutput(
            self,
            "GetApiKeyCommand",
            value=f"aws apigateway get-api-key --api-key {api.api_key.key_id} --include-value "
            f"--query value --output text --region {Aws.REGION}",
            description=f"Prints the API key value of client {first}",
        )
        for name, key in api.api_keys.items():
            CfnOutput(self, f"ApiKeyId{client_construct_id(name)}", value=key.key_id,
                      description=f"API key id of client {name}")
        for model, endpoint in self.serving.endpoints.items():
            CfnOutput(self, f"{endpoint.node.id}Endpoint", value=endpoint.endpoint_name,
                      description=f"SageMaker endpoint serving {model}")
        CfnOutput(self, "DataBucket", value=self.storage.data.bucket_name)
        CfnOutput(self, "ArtifactsBucket", value=self.storage.artifacts.bucket_name)
        CfnOutput(
            self,
            "BatchUploadLocation",
            value=f"s3://{self.storage.data.bucket_name}/{UPLOADS_PREFIX}",
            description="Put <model>/<name>.csv here, with the address to notify in the "
            "object's metadata, to start a batch job",
        )
        CfnOutput(self, "BatchSender", value=self.batch.sender,
                  description="SES identity batch emails come from (verify it once)")
        CfnOutput(self, "AlarmTopicArn", value=self.observability.topic.topic_arn)
        CfnOutput(self, "RetrainStateMachineArn",
                  value=self.retraining.state_machine.state_machine_arn,
                  description="Retrain a model: aws stepfunctions start-execution "
                  "--state-machine-arn <this> --input '{\"model\": \"<model>\"}'")
        CfnOutput(self, "MonitorStateMachineArn",
                  value=self.monitoring.state_machine.state_machine_arn,
                  description="Monitor a model now: aws stepfunctions start-execution "
                  "--state-machine-arn <this> --input '{\"model\": \"<model>\"}' (the report: "
                  "s3://<DataBucket>/monitoring/<model>/latest/report.html)")
        CfnOutput(self, "RetrainTopicArn", value=self.retraining.topic.topic_arn,
                  description="SNS topic of retraining outcomes (promoted, rejected, skipped, failed)")
        CfnOutput(
            self,
            "DashboardUrl",
            value=f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region="
            f"{Aws.REGION}#dashboards:name={self.observability.dashboard.dashboard_name}",
        )
