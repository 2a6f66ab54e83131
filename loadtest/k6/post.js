// k6 load test for jwt-proxy: POST JSON with a user header at a constant arrival rate, check
// every response carries a three-part x-my-jwt.
//   TARGET_URL   proxy URL            (default http://127.0.0.1:8080/)
//   RATE         requests per second  (default 500)
//   DURATION     e.g. 30s             (default 30s)
//   VUS          pre-allocated VUs    (default 50)
//   P99_MS       p99 latency bound    (default 50)
import http from 'k6/http';
import { check } from 'k6';

const TARGET = __ENV.TARGET_URL || 'http://127.0.0.1:8080/';
const RATE = parseInt(__ENV.RATE || '500', 10);
const VUS = parseInt(__ENV.VUS || '50', 10);
const P99_MS = parseInt(__ENV.P99_MS || '50', 10);

export const options = {
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  scenarios: {
    post: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: VUS,
      maxVUs: VUS * 4,
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    http_req_duration: [`p(99)<${P99_MS}`],
    dropped_iterations: ['count==0'],
  },
};

const body = JSON.stringify({ hello: 'world' });

export default function () {
  const res = http.post(TARGET, body, {
    headers: { 'content-type': 'application/json', 'x-user': `k6-vu-${__VU}` },
  });
  const token = res.headers['X-My-Jwt'] || '';
  check(res, {
    'status is 200': (r) => r.status === 200,
    'x-my-jwt has three parts': () => token.split('.').length === 3 && token.split('.').every((p) => p.length > 0),
  });
}
