#!/usr/bin/env bash
# The Prometheus rules in dist/prometheus: their syntax (promtool check rules), their
# unit tests (promtool test rules: series in, alerts out), and that every alert has a
# unit test and a runbook section in docs/operating.md that its runbook_url points at.
set -euo pipefail
cd "$(dirname "$0")/.."
promtool check rules dist/prometheus/*.yml
promtool test rules dist/prometheus/tests/*.yml
status=0
for alert in $(sed -n 's/^ *- alert: *//p' dist/prometheus/backstop.alerts.yml); do
  if ! grep -q "alertname: $alert\$" dist/prometheus/tests/*.yml; then
    echo "alert $alert has no promtool unit test in dist/prometheus/tests/" >&2
    status=1
  fi
  if ! grep -q "^### $alert\$" docs/operating.md; then
    echo "alert $alert has no runbook section (### $alert) in docs/operating.md" >&2
    status=1
  fi
  anchor=$(echo "$alert" | tr '[:upper:]' '[:lower:]')
  if ! grep -q "runbook_url: .*docs/operating.md#$anchor\$" dist/prometheus/backstop.alerts.yml; then
    echo "alert $alert has no runbook_url to docs/operating.md#$anchor" >&2
    status=1
  fi
done
alerts=$(grep -c '^ *- alert:' dist/prometheus/backstop.alerts.yml)
severities=$(grep -cE '^ *severity: (critical|warning)$' dist/prometheus/backstop.alerts.yml)
if [ "$alerts" != "$severities" ]; then
  echo "$alerts alerts but $severities severity labels (critical or warning)" >&2
  status=1
fi
echo "$alerts alerts, each with a unit test, a severity and a runbook section"
exit $status
