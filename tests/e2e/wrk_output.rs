//! The benchmark suite reads `wrk`'s report (`gatehouse_tests::wrk`): a figure misread would
//! go into every req/s and latency row unnoticed.

use gatehouse_tests::wrk::parse;

#[test]
fn the_benchmark_reads_wrks_report() {
    let out = "Running 1s test @ http://127.0.0.1:1/\n  Latency Distribution\n     50%  512.00us\n     75%    1.00ms\n     90%    2.00ms\n     99%    1.20s\n  1500 requests in 1.00s, 1.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 3\nRequests/sec:   1499.50\n";
    let run = parse(out);
    assert!((run.rps - 1499.5).abs() < 1e-9);
    assert!((run.p50_ms - 0.512).abs() < 1e-9);
    assert!((run.p99_ms - 1200.0).abs() < 1e-9);
    assert_eq!((run.requests, run.non_2xx, run.socket_errors), (1500, 3, 3));
    // Nothing read (wrk printed an error): no figure, and no request counted.
    let nothing = parse("unable to connect to 127.0.0.1:1 Connection refused\n");
    assert!(nothing.rps.is_nan() && nothing.p99_ms.is_nan());
    assert_eq!(nothing.requests, 0);
}
