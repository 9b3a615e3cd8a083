"""What the benchmarks in benches/ and the end-to-end tests in tests/e2e/ share (standard library
only): import the modules, e.g. `from benches.harness.cluster import start_redis`.

| module | what lives there |
|---|---|
| `procs` | the processes of one run (die with the script, SIGCONT before SIGKILL), free ports, bounded waits, the log line, the descriptor limit |
| `resp` | a minimal blocking RESP2 client, INFO parsing, one-shot calls |
| `cluster` | redis-server and redis-sentinel start-up; who is master, replicas in sync, sentinels ready |
| `endpoints` | redis-master-proxy (config, start-up, admin HTTP, /metrics), HAProxy (config, start-up, stats) and twemproxy (config, start-up) |
| `pollers` | observer threads: a node's role, one sentinel's events, a process's /proc numbers |
| `fake_sentinel` | a RESP server that plays a sentinel announcing failovers that never happen |
| `procfs` | /proc readings: descriptors, RSS, CPU time, limits |
| `tools` | tools on the PATH, building and copying the proxy, versions, the chart Python |

Tools are installed once with `benches/install.sh`; a run never installs anything. Entry points
run as files (`python3 benches/failover/run.py`) put the repository root first on sys.path, so
`benches.harness` imports the same way as under `python3 -m benches.failover.run`.
"""
