"""Parse Prometheus text (a JSON string on stdin) with the official client's parser; print {name: {labels: value}}."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

result = {}
for family in text_string_to_metric_families(json.load(sys.stdin)):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        result.setdefault(s.name, {})[labels] = s.value
print(json.dumps(result))
