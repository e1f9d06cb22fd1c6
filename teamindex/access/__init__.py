"""Who may: passwords, tokens, logins, permissions, IP rules, the throttle, the audit log."""
