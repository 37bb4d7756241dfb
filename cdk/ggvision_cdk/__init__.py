"""The Greengrass Vision CDK app: artifact bucket, component versions, one deployment."""
