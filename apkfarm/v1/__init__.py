"""Generated from proto/apkfarm/v1; do not edit."""
