# The bench hosts of this run (benchmarks/run writes BENCH_CONFIG), all deployed in parallel.
BENCH.fetch("hosts").each do |name, spec|
  server spec.fetch("address"), roles: %w[app], bench_name: name
end
