"""netproxy: kube-proxy's iptables rules, compiled, traced, diffed and applied offline."""

__version__ = "0.1.0"
