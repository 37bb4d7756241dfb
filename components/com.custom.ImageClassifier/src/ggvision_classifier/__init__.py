"""com.custom.ImageClassifier: classifies images named by requests on Greengrass IPC."""
