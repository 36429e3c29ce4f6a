"""What every service shares: configuration, logging, gRPC server, metrics, lifecycle."""
