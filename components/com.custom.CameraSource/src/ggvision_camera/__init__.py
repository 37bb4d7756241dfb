"""com.custom.CameraSource: captures frames and publishes inference requests on Greengrass IPC."""
