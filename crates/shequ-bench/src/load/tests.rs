use super::*;

/// A report of wrk 4.1.0 (Debian), every answer a 404.
const ALL_REFUSED: &str = "Running 1s test @ http://127.0.0.1:8765/missing
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.35ms    5.50ms  49.33ms   96.20%
    Req/Sec   804.65    132.67     0.92k    90.00%
  Latency Distribution
     50%    2.27ms
     75%    2.79ms
     90%    3.48ms
     99%   37.48ms
  1605 requests in 1.01s, 815.22KB read
  Non-2xx or 3xx responses: 1605
Requests/sec:   1593.24
Transfer/sec:    809.25KB
";

#[test]
fn a_wrk_report_gives_answers_failures_and_latency() {
    let refused = parse_wrk(ALL_REFUSED, Some(1.5)).unwrap();
    assert_eq!((refused.commands, refused.failures), (0, 1605));
    assert_eq!(refused.elapsed, Duration::from_secs_f64(1.01));
    assert!((refused.p50_ms - 2.27).abs() < 1e-9 && (refused.p99_ms - 37.48).abs() < 1e-9);
    assert_eq!(refused.busy_seconds, Some(1.5));

    let mostly_answered = "  2 threads and 64 connections
  Latency Distribution
     50%  812.00us
     75%    2.79ms
     90%    3.48ms
     99%    1.02s
  80000 requests in 1.00m, 40.10MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:   1333.33
";
    let run = parse_wrk(mostly_answered, None).unwrap();
    assert_eq!((run.commands, run.failures), (79_997, 6));
    assert_eq!(run.elapsed, Duration::from_secs(60));
    assert!((run.p50_ms - 0.812).abs() < 1e-9 && (run.p99_ms - 1020.0).abs() < 1e-9);

    let no_latency = ALL_REFUSED.replace("     99%   37.48ms\n", "");
    assert!(parse_wrk(&no_latency, None).is_err());
    assert!(parse_wrk("wrk: unable to connect", None).is_err());
}
