"""Models: the model store and its manifests, the backends (one module per runtime) and loading
a configured model until it serves."""
