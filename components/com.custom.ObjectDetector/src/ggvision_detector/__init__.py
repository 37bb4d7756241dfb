"""com.custom.ObjectDetector: finds objects (boxes, labels, scores) in images named by requests
on Greengrass IPC."""
