"""bpserve's HTTP side: the Flask app, its routes, schemas, auth, metrics and logs."""
