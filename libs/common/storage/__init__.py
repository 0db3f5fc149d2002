"""Object store adapters: local folder and S3/MinIO."""
