"""com.custom.LiveView: live annotated frames, status panels, Prometheus metrics and health
endpoints over HTTP."""
