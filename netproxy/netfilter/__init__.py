"""The netfilter side: rule model, extension table, save-format rules."""
