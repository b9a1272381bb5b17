"""The namespace lab: a node, pods and clients built from cluster objects, where real
packets check the tracer's predictions (``netproxy lab up / check / down``)."""
