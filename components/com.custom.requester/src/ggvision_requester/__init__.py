"""com.custom.requester: sends the images of a folder to the classifier over Greengrass IPC."""
