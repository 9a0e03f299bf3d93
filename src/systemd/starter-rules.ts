/**
 * The rules.yaml that `mailgw systemd install` puts in /etc/mailgw when none exists: it
 * accepts mail for one placeholder domain and archives everything, so a fresh service starts,
 * loses nothing and forwards nothing until the operator writes real rules (SPEC §3).
 * Never written over an existing file.
 */
export const STARTER_RULES_YAML = `# mailgw starter rules (written because no rules file existed; see README "Rules").
# Edit, check with \`mailgw rules lint FILE\`; the running gateway picks a valid new
# version up by itself (or on SIGHUP: systemctl reload mailgw).

# Recipient domains this gateway accepts mail for; RCPT TO any other domain → 550 5.7.1.
domains: [example.com]

# When no rule matches: keep the message in the archive (DATA_DIR/archive/YYYY-MM-DD/).
default: { action: archive, category: default }

rules:
  - name: reject-spam-subject
    priority: 1000
    category: spam
    action: reject
    reject_message: "Message rejected as spam"
    conditions:
      - { field: subject, operator: regex, value: '^\\[SPAM\\]' }
`;
