"""Text to rule model: iptables-save output and iptables-restore input, strict or lenient."""

from netproxy.parser.dump import infer_family, parse_rules, read_rules
from netproxy.parser.rules import parse_rule_words, rule_from_args

__all__ = ["infer_family", "parse_rule_words", "parse_rules", "read_rules", "rule_from_args"]
