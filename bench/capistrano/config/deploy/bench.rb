# Stage `bench`: the farm's hosts (BENCH_HOSTS, space-separated addresses; HOSTS would be
# Capistrano's own host filter). Capistrano connects as root: its own steps (mkdir, ln, mv, the
# revision log) have no sudo switch, and the layout is root's.
ENV.fetch("BENCH_HOSTS").split.each do |address|
  server address, user: "root", roles: %w[app web db]
end
