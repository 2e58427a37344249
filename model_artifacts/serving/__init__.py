"""The serving container: an HTTP model server on SageMaker's real-time endpoint contract."""
