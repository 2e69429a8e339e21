-- ringline.host: the functions the host executable ringline-lua exports to
-- its workers (bindings/host/rl_host.h), reached through ffi.C like the
-- core. Returns that namespace inside the host, and false anywhere else
-- (plain LuaJIT, busted): there is no host registry there, and the callers
-- fall back to this worker alone.
--
-- This module is the one answer to "am I inside the host?": ringline.lib
-- (which then uses ffi.C), and the modules reading ringline.hostinfo (the
-- host's settings: log, worker, listener) ask it rather than looking for
-- that module themselves.
local ffi = require "ffi"
require "ringline.cdef"

local ok, hostinfo = pcall(require, "ringline.hostinfo")
if not (ok and type(hostinfo) == "table" and hostinfo.host) then
  return false
end

-- The declarations must match rl_host.h (spec/workers_spec.lua resolves
-- each one in the built host).
pcall(ffi.cdef, [[
int rl_host_register(int id, struct rl_worker *w);
int rl_host_unregister(int id, struct rl_worker *w);
int rl_host_post(int to, uint32_t from, uint32_t kind, const void *data, size_t len,
                 struct rl_worker *via);
int rl_host_exit(int code);
int rl_host_listen_shared(struct rl_worker *w, const char *addr, uint32_t flags, uint32_t backlog);
int rl_host_listen(struct rl_worker *w, int slot, const char *addr, uint32_t flags, uint32_t backlog);
int rl_host_unlisten(int slot, const char *addr);
int rl_host_ready(int slot);
int rl_host_reload(int slot);
int rl_host_upgrade(int slot);
struct rl_host_watch {
  volatile uint32_t beat;
  volatile uint32_t loc;
  volatile uint32_t timeout_ms;
  volatile uint32_t abort;
  volatile uint32_t fired;
  uint32_t pad;
};
struct rl_host_watch *rl_host_watch(int id);
uint32_t rl_host_watch_loc(const char *where);
int rl_host_log(int id, const char *line, size_t len);
int rl_host_log_config(char *format, size_t cap);
int rl_host_metrics_listen(const char *addr, char *msg, size_t msglen);
int rl_host_metrics_address(char *out, size_t cap);
struct rl_host_stats {
  double tasks;
  double listeners;
  double tasks_refused;
  double conns_refused_per_ip;
  double conns_shed;
};
struct rl_host_stats *rl_host_stats(int id);
int rl_host_metric_family(const char *name, const char *help, int type, const char *labelnames,
                          const double *buckets, int nbuckets, char *msg, size_t msglen);
double *rl_host_metric_cell(int family, int worker, const char *labels, char *msg, size_t msglen);
]])

local C = ffi.C
local _ = C.rl_host_register, C.rl_host_unregister, C.rl_host_post, C.rl_host_exit,
  C.rl_host_listen_shared, C.rl_host_watch, C.rl_host_watch_loc, C.rl_host_metrics_listen,
  C.rl_host_metrics_address, C.rl_host_log, C.rl_host_log_config, C.rl_host_stats, C.rl_host_metric_family, C.rl_host_metric_cell,
  C.rl_host_listen, C.rl_host_unlisten, C.rl_host_ready, C.rl_host_reload, C.rl_host_upgrade
return C
