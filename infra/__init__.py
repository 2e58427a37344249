"""inferline's AWS deployment: the CDK app (app.py), its stack and one construct per capability."""
