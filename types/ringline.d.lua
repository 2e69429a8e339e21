---@meta ringline
-- LuaCATS definitions of the ringline Lua API for lua-language-server:
-- completion and type checks for scripts. Never loaded at run time (the
-- implementation is lua/ringline/). docs/api.md is the reference this
-- follows; spec/api_doc_spec.lua checks that both name every exported
-- function and method, and no other.
--
-- Use: add this file's directory to "workspace.library" (installed in
-- <prefix>/share/ringline/types by cmake --install).

---The error strings of the API; any other is the OS message in lower case.
---@alias ringline.err
---| '"timeout"'
---| '"closed"'
---| '"canceled"'
---| '"connection reset by peer"'
---| '"connection refused"'
---| '"socket busy reading"'
---| '"busy"'
---| '"too long"'
---| '"too large"'
---| string

---@alias ringline.pattern '"*l"'|'"l"'|'"*a"'|'"a"'|integer

---@alias ringline.sendable string|number|ringline.slice|string.buffer|ringline.sendable[]

---@class ringline.runopts: table<string, integer|number|function>
---@field timeout? number      seconds for the whole run
---@field on_error? fun(err: any, traceback: string, task: ringline.task)
---@field drain_timeout? number seconds a graceful stop may take

---@class ringline.configkey
---@field default integer
---@field min integer
---@field max integer
---@field pow2 boolean
---@field doc string

---@class ringline.listenopts
---@field nodelay? boolean        TCP_NODELAY on accepted connections (default true)
---@field max_connections? integer connections beyond this are reset at once
---@field accept? '"reuseport"'|'"acceptor"'
---@field reuseport? boolean
---@field backlog? integer        accepted and ignored (listen_backlog key)
---@field mode? integer|string    unix sockets: the file's permissions (tonumber("660", 8) or "0660")
---@field ssl? {cert: string, key: string, alpn: string[]?, sni: table<string, {cert: string, key: string}>?, protocols: string[]?, ciphers: string?, client_ca: string?, handshake_timeout: integer?} TLS: PEM certificate (chain) and key files

---@class ringline.connectopts
---@field timeout? number seconds for the lookup and every attempt (0: none; nil: connect_timeout)
---@field bind? string    local address: "host", "host:port", "[v6]:port", a name, or a unix path
---@field pool? string     keep-alive pool name (default "host:port")
---@field pool_size? integer  the pool's size if this creates it (default 30)
---@field backlog? integer    connects queued when pool_size are open (bounds them)
---@field ssl? true|{verify: boolean?, server_name: string?, ca: string?, cafile: string?, alpn: string[]?, cert: string?, key: string?, protocols: string[]?, ciphers: string?, session: ringline.ssl_session?, handshake_timeout: integer?} TLS (verify on by default)

---A client's TLS session (cdata): pass it back as ssl.session or reused_session to resume.
---@class ringline.ssl_session

---@class ringline.receiveuntilopts
---@field inclusive? boolean include the delimiter in the part
---@field max? integer       longest part read whole (default line_max)

---@class ringline.receiveopts
---@field max? integer most bytes this call buffers before "too large" (default max_receive)

---The ringline API: require "ringline".
---@class ringline
local ringline = {}

---The version of the Lua API.
---@type string
ringline._VERSION = "0.1.0"

---Log levels (nginx's numbers).
ringline.ERR = 4
ringline.WARN = 5
ringline.NOTICE = 6
ringline.INFO = 7
ringline.DEBUG = 8

------------------------------------------------------------------------
-- Running
------------------------------------------------------------------------

---Run a worker loop with fn(...) as the main task; returns its results or raises its error.
---@param opts ringline.runopts|function options, or fn when there are none
---@param fn? function
---@param ... any
---@return any ...
function ringline.run(opts, fn, ...) end

---Set configuration keys (before the first I/O of the run).
---@param t table<string, integer>
function ringline.configure(t) end

---The effective value of a configuration key in this run.
---@param key string
---@return integer
function ringline.config(key) end

---Every configuration key with its default, range and description.
---@return table<string, ringline.configkey>
function ringline.config_keys() end

---The loop's monotonic clock, in seconds.
---@return number
function ringline.now() end

---The worker's counters and gauges, plus tasks and listeners.
---@return table<string, number>
function ringline.metrics() end

---Set the handler for errors raised by tasks; returns the previous one.
---@param fn? fun(err: any, traceback: string, task: ringline.task)
---@return function|nil
function ringline.on_error(fn) end

------------------------------------------------------------------------
-- Tasks
------------------------------------------------------------------------

---Start fn(...) as a new task.
---@param fn function
---@param ... any
---@return ringline.task
function ringline.spawn(fn, ...) end

---Suspend the running task for some seconds (blocking).
---@param seconds number
---@return true|nil ok
---@return ringline.err? err
function ringline.sleep(seconds) end

---The results of the first of the tasks to finish (blocking).
---@param task ringline.task
---@param ... ringline.task
---@return boolean|nil ok
---@return any ...
function ringline.wait(task, ...) end

---The running task, or nil outside a task.
---@return ringline.task|nil
function ringline.current() end

---A new semaphore holding n resources (default 0).
---@param n? integer
---@return ringline.semaphore
function ringline.semaphore(n) end

---A new bounded channel (capacity 0: unbuffered).
---@param capacity? integer
---@return ringline.channel
function ringline.channel(capacity) end

---The coroutine library, with resume and wrap that let blocking calls through.
ringline.coroutine = {}

---@param fn function
---@return thread
function ringline.coroutine.create(fn) end

---@param co thread
---@param ... any
---@return boolean ok
---@return any ...
function ringline.coroutine.resume(co, ...) end

---@param fn function
---@return function
function ringline.coroutine.wrap(fn) end

---@param ... any
---@return any ...
function ringline.coroutine.yield(...) end

---@param co thread
---@return '"running"'|'"suspended"'|'"normal"'|'"dead"'
function ringline.coroutine.status(co) end

---@return thread
---@return boolean ismain
function ringline.coroutine.running() end

---@return boolean
function ringline.coroutine.isyieldable() end

---A task: a coroutine scheduled by ringline.
---@class ringline.task
local task = {}

---Wait for the task to finish (blocking): true, results... or false, err; nil, err on timeout or cancel.
---@param timeout? number seconds
---@return boolean|nil ok
---@return any ...
function task:join(timeout) end

---Make the task's current (or next) blocking call return nil, "canceled".
---@return boolean
function task:cancel() end

---@return '"ready"'|'"running"'|'"parked"'|'"dead"'
function task:status() end

---@class ringline.semaphore
local semaphore = {}

---Add n resources (default 1).
---@param n? integer
---@return true
function semaphore:post(n) end

---Take one resource, waiting at most timeout seconds (blocking).
---@param timeout? number seconds; 0 = do not wait
---@return true|nil ok
---@return ringline.err? err
function semaphore:wait(timeout) end

---Resources available, or minus the number of waiters.
---@return integer
function semaphore:count() end

---@class ringline.channel
local channel = {}

---Put a value, waiting at most timeout seconds for room (blocking).
---@param value any not nil
---@param timeout? number seconds; 0 = do not wait
---@return true|nil ok
---@return ringline.err? err
function channel:put(value, timeout) end

---The oldest value, waiting at most timeout seconds (blocking).
---@param timeout? number seconds; 0 = do not wait
---@return any|nil value
---@return ringline.err? err
function channel:get(timeout) end

---No more puts.
---@return true|nil ok
---@return ringline.err? err
function channel:close() end

---Values buffered.
---@return integer
function channel:count() end

------------------------------------------------------------------------
-- Timers
------------------------------------------------------------------------

ringline.timer = {}

---Run fn(premature, ...) once after delay seconds.
---@param delay number seconds
---@param fn fun(premature: boolean, ...)
---@param ... any
---@return ringline.timer|nil handle
---@return string? err
function ringline.timer.at(delay, fn, ...) end

---Run fn(premature, ...) every interval seconds.
---@param interval number seconds
---@param fn fun(premature: boolean, ...)
---@param ... any
---@return ringline.timer|nil handle
---@return string? err
function ringline.timer.every(interval, fn, ...) end

---Timers armed and not yet fired.
---@return integer
function ringline.timer.pending_count() end

---A timer handle.
---@class ringline.timer
local timer = {}

---true if the timer was pending (it will not run again).
---@return boolean
function timer:cancel() end

---true while the timer is armed.
---@return boolean
function timer:pending() end

------------------------------------------------------------------------
-- Listeners and connections
------------------------------------------------------------------------

---Listen on addr; handler(conn) runs as a task for each accepted connection.
---@param addr string|integer "host:port", "[v6]:port", ":port", a port, or "unix:/path"
---@param handler fun(conn: ringline.conn)
---@param opts? ringline.listenopts
---@return ringline.listener|nil
---@return string? err
function ringline.listen(addr, handler, opts) end

---@class ringline.listener
---@field refused integer connections refused by max_connections
local listener = {}

---The host part of the address and the bound port.
---@return string|nil host
---@return integer|string port_or_err
function listener:getsockname() end

---Accepted connections still open.
---@return integer
function listener:connections() end

---TLS handshakes on this listener that failed, timed out or ended closed.
---@return integer
function listener:tls_failures() end

---Stop listening.
---@return true|nil ok
---@return string? err
function listener:close() end

---Open a connection (blocking). For "unix:/path" the port may be left out.
---@param host string
---@param port? integer|ringline.connectopts
---@param opts? ringline.connectopts
---@return ringline.conn|nil
---@return string? err
function ringline.connect(host, port, opts) end

---Resolve a host name (blocking); family 4 or 6 restricts the answer.
---@param name string
---@param family? 4|6
---@return string[]|nil addresses
---@return string? err
function ringline.resolve(name, family) end

---A TCP or unix stream connection.
---@class ringline.conn
local conn = {}

---Read a line (default), everything ("*a") or n bytes (blocking); n or the
---stream past max_receive (or opts.max) is nil, "too large".
---@param pattern? ringline.pattern
---@param opts? ringline.receiveopts
---@return string|nil data
---@return ringline.err? err
---@return string? partial
function conn:receive(pattern, opts) end

---What has arrived, at most max bytes (blocking).
---@param max integer
---@return string|nil data
---@return ringline.err? err
function conn:receiveany(max) end

---An iterator reading up to the delimiter; iter(size) reads the part in pieces.
---@param delimiter string
---@param opts? ringline.receiveuntilopts
---@return fun(size?: integer): string|nil, string|nil, string|nil
function conn:receiveuntil(delimiter, opts) end

---An iterator over lines.
---@return fun(): string|nil
function conn:lines() end

---Zero-copy access to the receive buffer: ptr, len with len >= min (blocking);
---min past max_receive (or opts.max) is nil, "too large".
---@param min? integer default 1
---@param timeout? number|ringline.receiveopts milliseconds, or opts in its place
---@param opts? ringline.receiveopts
---@return ffi.cdata*|nil ptr
---@return integer|string len_or_err
function conn:view(min, timeout, opts) end

---Drop n bytes from the front of the receive buffer.
---@param n integer
---@return true|nil ok
---@return ringline.err? err
function conn:consume(n) end

---fn(ptr, len) -> used [, result], called until it uses something (blocking).
---@param fn fun(ptr: ffi.cdata*, len: integer): integer|nil, any
---@return any|nil result
---@return ringline.err? err
function conn:with_data(fn) end

---Queue data; waits only above the high watermark (blocking). Returns the bytes queued.
---@param data ringline.sendable
---@param ... ringline.sendable
---@return integer|nil bytes
---@return ringline.err? err
function conn:send(data, ...) end

---As send, but nil, "busy" instead of waiting.
---@param data ringline.sendable
---@param ... ringline.sendable
---@return integer|nil bytes
---@return ringline.err? err
function conn:send_nowait(data, ...) end

---Move what src has buffered into this connection's send queue (blocking).
---@param src ringline.conn
---@param max? integer
---@return integer|nil bytes
---@return ringline.err? err
---@return '"receive"'|'"send"'|nil side
function conn:send_from(src, max) end

---Send a file's bytes by the kernel (sendfile(2), or splices for what is not cached), after head, in order with other sends (blocking).
---@param file ringline.file
---@param offset? integer
---@param count? integer
---@param head? string|string.buffer sent before the file (not consumed)
---@return integer|nil bytes
---@return ringline.err|'"file truncated"'|nil err
function conn:sendfile(file, offset, count, head) end

---Wait until everything is sent and every guard released (blocking).
---@param timeout? number milliseconds
---@return true|nil ok
---@return ringline.err? err
function conn:flush(timeout) end

---Read and send timeouts, milliseconds (nil or 0: none).
---@param ms? number
function conn:settimeout(ms) end

---Send and read timeouts, milliseconds; connect_ms has no effect.
---@param connect_ms? number
---@param send_ms? number
---@param read_ms? number
function conn:settimeouts(connect_ms, send_ms, read_ms) end

---Half-close after the queued bytes.
---@param how '"send"'
---@return true|nil ok
---@return string? err
function conn:shutdown(how) end

---Close (after queued sends), or reset at once with "reset".
---@param how? '"reset"'
---@return true|nil ok
---@return string? err
function conn:close(how) end

---Start TLS on a plaintext connection (client; a table argument: server).
---@param reused_session ringline.ssl_session|false|nil|{cert: string, key: string}
---@param server_name string?
---@param ssl_verify boolean? default true
---@param opts {ca: string?}?
---@return ringline.ssl_session|true|nil session_or_ok a session object (client), true (server, or reused_session false)
---@return string? err
function conn:sslhandshake(reused_session, server_name, ssl_verify, opts) end

---What a TLS connection negotiated.
---@return {protocol: string, cipher: string, server_name: string?, peer_subject: string?, peer_verified: boolean, resumed: boolean, alpn: string?, session: ringline.ssl_session?}|nil info
---@return string? err
function conn:sslinfo() end

---@return string|nil ip
---@return integer|string port_or_err
function conn:getpeername() end

---@return string|nil ip
---@return integer|string port_or_err
function conn:getsockname() end

---@param name '"tcp-nodelay"'|'"keepalive"'|'"sndbuf"'|'"rcvbuf"'
---@param value boolean|integer
---@return true|nil ok
---@return string? err
function conn:setoption(name, value) end

---Unique in the worker while the connection lives.
---@return integer
function conn:id() end

---Give the connection to a task (closed when it ends), or to nobody (nil).
---@param task ringline.task|nil
---@return true|nil ok
---@return string? err
function conn:setowner(task) end

---@return ringline.task|nil
function conn:getowner() end

---Put the connection into its keep-alive pool (ringline.connect's key).
---@param timeout_ms? number idle timeout, 0 = none (default 60000)
---@param size? integer the pool's size if this creates it (default 30)
---@return true|nil ok
---@return string? err
function conn:setkeepalive(timeout_ms, size) end

---Times the connection was taken from a keep-alive pool.
---@return integer|nil n
---@return string? err
function conn:getreusedtimes() end

------------------------------------------------------------------------
-- Processes
------------------------------------------------------------------------

---@class ringline.execopts
---@field cwd? string the child's working directory
---@field env? table<string, string|number> the child's whole environment (default: the worker's)
---@field stdin? string "null" (default), "pipe", "inherit", or the bytes to feed it
---@field stdout? '"pipe"'|'"null"'|'"inherit"' default "pipe"
---@field stderr? '"inherit"'|'"pipe"'|'"stdout"'|'"null"' default "inherit"
---@field timeout? number ms: killed with SIGKILL if still running then

---@class ringline.captureopts: ringline.execopts
---@field max_output? integer bytes of stdout kept (default 16 MiB); more kills it

---Start a program (argv[1] is searched in PATH) without blocking the worker.
---@param argv string[]
---@param opts? ringline.execopts
---@return ringline.process|nil p
---@return string? err
function ringline.exec(argv, opts) end

---Run a program to its end: its whole stdout and os.execute's three results.
---@param argv string[]
---@param opts? ringline.captureopts
---@return string|nil out
---@return true|nil|string ok the error when out is nil
---@return '"exit"'|'"signal"'|nil how
---@return integer? code
function ringline.exec_capture(argv, opts) end

---A child process of ringline.exec. p.stdin, p.stdout, p.stderr are
---connections (ringline.conn) for the streams opened as "pipe", else false.
---@class ringline.process
---@field stdin ringline.conn|false
---@field stdout ringline.conn|false
---@field stderr ringline.conn|false
local process = {}

---Wait for it to end (blocking): true, "exit", 0 / nil, "exit", code / nil, "signal", n.
---@param timeout? number seconds; then nil, "timeout" (it still runs)
---@return true|nil ok
---@return string how
---@return integer? code
function process:wait(timeout) end

---Send a signal (default SIGTERM): a number or a name ("TERM", "KILL", ...).
---@param sig? integer|string
---@return true|nil ok
---@return string? err "exited" once it has ended
function process:kill(sig) end

---@return integer
function process:pid() end

---true once opts.timeout killed it.
---@return boolean
function process:timedout() end

---Kill it (SIGKILL) if it still runs and close its streams; the owning task's end does this.
---@return true|nil ok
---@return string? err
function process:close() end

------------------------------------------------------------------------
-- NVMe
------------------------------------------------------------------------

---@class ringline.nvmeopts
---@field lba_size? integer bytes per block (skips the identify namespace that learns it)
---@field timeout? number seconds each command may take (default: no limit)

---@class ringline.nvme_mod
ringline.nvme = {}

---Open a namespace's NVMe generic device (/dev/ngXnY) for passthrough commands.
---@param path string
---@param opts? ringline.nvmeopts
---@return ringline.nvme|nil dev
---@return string? err
function ringline.nvme.open(path, opts) end

---@class ringline.nvme
local nvme = {}

---Read nblocks blocks from lba (blocking): nblocks * lba_size bytes.
---@param lba integer
---@param nblocks integer 1..65536
---@return string|nil data
---@return string? err
function nvme:read(lba, nblocks) end

---Write data (a whole number of blocks) at lba (blocking).
---@param lba integer
---@param data string
---@return true|nil ok
---@return string? err
function nvme:write(lba, data) end

---Flush the namespace's volatile write cache (blocking).
---@return true|nil ok
---@return string? err
function nvme:flush() end

---The controller's identify data (blocking): vid, ssvid, serial, model, firmware, mdts, nn, raw.
---@return table|nil id
---@return string? err
function nvme:identify() end

---@return integer
function nvme:lba_size() end

---@return integer
function nvme:nsid() end

---Close the device; nil, "busy" while a command of a canceled wait is still with the kernel.
---@return true|nil ok
---@return string? err
function nvme:close() end

------------------------------------------------------------------------
-- UDP
------------------------------------------------------------------------

---A new UDP socket (made by its first bind, setpeername or sendto).
---@return ringline.udp
function ringline.udp() end

---@class ringline.udp
local udp = {}

---@param host string "*" = every address
---@param port integer 0 = any
---@return true|nil ok
---@return string? err
function udp:bind(host, port) end

---@param host string
---@param port integer
---@return true|nil ok
---@return string? err
function udp:setpeername(host, port) end

---@param data string|number|string[]
---@return true|nil ok
---@return string? err
function udp:send(data) end

---@param host string
---@param port integer
---@param data string|number|string[]
---@return true|nil ok
---@return string? err
function udp:sendto(host, port, data) end

---The oldest datagram (blocking); a third result "truncated" when cut.
---@param size? integer 1..65536
---@return string|nil data
---@return string|nil err
---@return '"truncated"'|nil truncated
function udp:receive(size) end

---The oldest datagram and its sender (blocking).
---@param size? integer 1..65536
---@return string|nil data
---@return string ip_or_err
---@return integer? port
---@return '"truncated"'|nil truncated
function udp:receivefrom(size) end

---Receive timeout, milliseconds (nil or 0: none).
---@param ms? number
function udp:settimeout(ms) end

---@return string|nil ip
---@return integer|string port_or_err
function udp:getsockname() end

---@return true|nil ok
---@return string? err
function udp:close() end

------------------------------------------------------------------------
-- Regions and slices
------------------------------------------------------------------------

---Map and register size bytes for zero-copy sends.
---@param size integer
---@return ringline.region|nil
---@return string? err
function ringline.region(size) end

---@class ringline.region
local region = {}

---@return ffi.cdata* uint8_t *
function region:ptr() end

---@return integer
function region:size() end

---@return integer
function region:id() end

---Bytes [offset, offset + length) (length: the rest by default).
---@param offset integer
---@param length? integer
---@return ringline.slice
function region:slice(offset, length) end

---Guarded sends of the region not yet released.
---@return integer
function region:inflight() end

---@return true|nil ok
---@return '"busy"'|string|nil err
function region:free() end

---Read len bytes of file from offset into the region at byte at (READ_FIXED).
---@param file ringline.file
---@param offset integer
---@param len integer
---@param at? integer
---@return integer|nil bytes
---@return string? err
function region:load(file, offset, len, at) end

---@class ringline.slice
local slice = {}

---@return ffi.cdata* uint8_t *
function slice:ptr() end

---@return integer
function slice:len() end

---@return integer
function slice:offset() end

---@return ringline.region
function slice:region() end

---A copy of the bytes.
---@return string
function slice:string() end

------------------------------------------------------------------------
-- Files (ringline.fs)
------------------------------------------------------------------------

---Files through the ring: each call parks the task until its operation completes.
ringline.fs = {}

---Open path with an io.open mode ("r", "w", "a", "r+", "w+", "a+"; "x": exclusive, "d": O_DIRECT).
---@param path string
---@param mode? string
---@param perm? integer
---@return ringline.file|nil
---@return string? err
function ringline.fs.open(path, mode, perm) end

---@class ringline.fs.stat
---@field size integer
---@field type '"file"'|'"directory"'|'"link"'|'"char"'|'"block"'|'"fifo"'|'"socket"'|'"other"'
---@field perm integer
---@field mode integer
---@field mtime number
---@field atime number
---@field ctime number

---@param path string
---@param opts? {nofollow?: boolean}
---@return ringline.fs.stat|nil
---@return string? err
function ringline.fs.stat(path, opts) end

---@param path string
---@return true|nil ok
---@return string? err
function ringline.fs.unlink(path) end

---@param path string
---@return true|nil ok
---@return string? err
function ringline.fs.rmdir(path) end

---@param from string
---@param to string
---@return true|nil ok
---@return string? err
function ringline.fs.rename(from, to) end

---@param path string
---@param perm? integer
---@return true|nil ok
---@return string? err
function ringline.fs.mkdir(path, perm) end

---@param path string
---@return string|nil data
---@return string? err
function ringline.fs.readfile(path) end

---Atomically: a temporary file renamed over path.
---@param path string
---@param data any
---@param opts? {fsync?: boolean, perm?: integer}
---@return true|nil ok
---@return string? err
function ringline.fs.writefile(path, data, opts) end

---Sorted names, and name -> "file"|"directory"|"link"|"other".
---@param path string
---@return string[]|nil names
---@return table<string, string>|string types_or_err
function ringline.fs.listdir(path) end

---@class ringline.file
---@field align integer direct I/O alignment (1 for buffered files)
local file = {}

---n bytes (or "a", "l", "L"); nil, "eof" at the end.
---@param n integer|string
---@param offset? integer
---@return string|nil data
---@return string? err
function file:read(n, offset) end

---@param data any
---@param offset? integer
---@return integer|nil bytes
---@return string? err
function file:write(data, offset) end

---@param sizes integer[]
---@param offset? integer
---@return string[]|nil pieces
---@return string? err
function file:readv(sizes, offset) end

---@param parts any[]
---@param offset? integer
---@return integer|nil bytes
---@return string? err
function file:writev(parts, offset) end

---@param fmt? string
---@return fun(): string|nil
function file:lines(fmt) end

---@return true|nil ok
---@return string? err
function file:fsync() end

---@return true|nil ok
---@return string? err
function file:fdatasync() end

---@return ringline.fs.stat|nil
---@return string? err
function file:stat() end

---@return integer|nil size
---@return string? err
function file:size() end

---@param whence? '"set"'|'"cur"'|'"end"'
---@param offset? integer
---@return integer|nil position
---@return string? err
function file:seek(whence, offset) end

---@param ms? number
function file:settimeout(ms) end

---@return true|nil ok
---@return string? err
function file:close() end

------------------------------------------------------------------------
-- Logging
------------------------------------------------------------------------

---@param level integer ringline.ERR .. ringline.DEBUG
---@param ... any
function ringline.log(level, ...) end

---Returns the threshold; sets it when level is given.
---@param level? integer
---@return integer
function ringline.log_level(level) end

------------------------------------------------------------------------
-- Workers, messages, signals
------------------------------------------------------------------------

---This worker's index, from 0.
---@return integer
function ringline.worker_id() end

---The number of workers.
---@return integer
function ringline.workers() end

ringline.worker = {}

---@return integer
function ringline.worker.id() end

---@return integer
function ringline.worker.count() end

---@param id integer
---@param msg string
---@return true|nil ok
---@return string? err
function ringline.worker.post(id, msg) end

---@param msg string
---@return integer reached
function ringline.worker.broadcast(msg) end

---@param fn? fun(from: integer, msg: string)
---@return function|nil previous
function ringline.worker.on_message(fn) end

---@param name '"HUP"'|'"USR1"'|'"USR2"'|string
---@param fn? fun(name: string)
---@return function|nil previous
function ringline.on_signal(name, fn) end

---Stop every worker gracefully; the host then exits with code.
---@param code? integer 0..255
---@return true
function ringline.exit(code) end

---true once this worker is stopping.
---@return boolean
function ringline.exiting() end

---Reload the script into new workers that take the listening sockets over
---(SIGHUP's default); the old ones drain. Host only.
---@return true|nil ok
---@return string? err "not in the host"
function ringline.reload() end

---Start a new process of the executable that takes the listening sockets
---over (SIGUSR2's default); this one drains and exits once it is ready.
---@return true|nil ok
---@return string? err "not in the host"
function ringline.upgrade() end

------------------------------------------------------------------------
-- Metrics (served by the host's --metrics endpoint)
------------------------------------------------------------------------

---A counter, gauge or histogram child (one label set), or a metric without labels.
---@class ringline.metric.child
---@field inc fun(self: ringline.metric.child, v?: number) counter, gauge: add v (default 1)
---@field add fun(self: ringline.metric.child, v: number) same as inc
---@field dec fun(self: ringline.metric.child, v?: number) gauge: subtract v (default 1)
---@field set fun(self: ringline.metric.child, v: number) gauge: set
---@field observe fun(self: ringline.metric.child, v: number) histogram: one value

---@class ringline.metric.family: ringline.metric.child
---@field labels fun(self: ringline.metric.family, ...: string|number|table<string, string|number>): ringline.metric.child

ringline.metric = {}

---@param name string [a-zA-Z_:][a-zA-Z0-9_:]*; "_total" is appended when missing
---@param help string
---@param labels? string[] label names
---@return ringline.metric.family
function ringline.metric.counter(name, help, labels) end

---@param name string
---@param help string
---@param labels? string[]
---@return ringline.metric.family
function ringline.metric.gauge(name, help, labels) end

---@param name string
---@param help string
---@param buckets? number[] increasing upper bounds (default .005 .. 10)
---@param labels? string[]
---@return ringline.metric.family
function ringline.metric.histogram(name, help, buckets, labels) end

---The metrics endpoint's address ("host:port"), nil when none serves.
---@return string|nil
function ringline.metric.address() end

------------------------------------------------------------------------
-- HTTP server: require "ringline.http"
------------------------------------------------------------------------

---@class ringline.http
local http = {}

---@class ringline.http.listen_opts
---@field max_header_bytes? integer request line and fields (8192)
---@field max_body_bytes? integer a request body (1048576)
---@field header_timeout? number ms a head may take (10000; 0 = none)
---@field keepalive_timeout? number ms an idle connection waits (60000; 0 = none)
---@field access_log? string a path or "stderr" (combined log format)
---@field ssl? table { cert = PATH, key = PATH }: HTTPS (passed to ringline.listen)

---Serve HTTP/1.1 on addr: handler(req, res) per request.
---@param addr string|integer
---@param handler fun(req: ringline.http.req, res: ringline.http.res)
---@param opts? ringline.http.listen_opts|table
---@return ringline.listener|nil
---@return string? err
function http.listen(addr, handler, opts) end

---@class ringline.http.req
---@field method string
---@field target string
---@field path string
---@field query string|nil
---@field version '"1.0"'|'"1.1"'
---@field headers table<string, string|string[]>
local req = {}

---The query decoded: name -> string, true, or an array of strings.
---@return table<string, string|boolean|string[]>
function req:args() end

---The whole body (bounded by max_body_bytes).
---@return string|nil body
---@return string? err
function req:body() end

---An iterator over the body's pieces.
---@return fun(): string|nil, string|nil
function req:body_reader() end

---@class ringline.http.res
local res = {}

---@param code integer
---@return ringline.http.res
function res:status(code) end

---@param name string
---@param value string|number|(string|number)[]|nil
---@return ringline.http.res
function res:header(name, value) end

---Stream a piece of the body (chunked for 1.1, close-delimited for 1.0).
---@param data any what conn:send takes
---@return true|nil ok
---@return string? err
function res:write(data) end

---A file as the body (Content-Length) or as one more chunk.
---@param file ringline.file
---@param offset? integer
---@param count? integer
---@return true|nil ok
---@return string? err
function res:sendfile(file, offset, count) end

---End the response; without writes before it, data is the whole body.
---@param data? any what conn:send takes
---@return true|nil ok
---@return string? err
function res:finish(data) end
-- HTTP client: require "ringline.http_client" (and the ringline.http
-- facade's request, get, websocket_connect)
------------------------------------------------------------------------

---@class ringline.requestopts
---@field url string              "http://host[:port]/path" or "https://..."
---@field method? string          default "GET"
---@field headers? table<string, string|string[]>
---@field body? string
---@field timeout? number         ms for each connect, send and read (default 60000)
---@field ssl? true|{verify: boolean?, server_name: string?, ca: string?, cafile: string?}
---@field redirects? integer      redirects to follow (default 0)
---@field keepalive? boolean      default true
---@field pool_size? integer      idle connections kept per origin (default 16)
---@field idle_timeout? number    ms an idle connection is kept (default 60000)
---@field max_header_bytes? integer default 65536
---@field max_body_bytes? integer  response:body()'s limit (default 64 MiB)

---@class ringline.response
---@field status integer
---@field headers table<string, string> lower-case names
---@field version string "1.0" or "1.1"
local response = {}

---@param t ringline.requestopts
---@return ringline.response|nil res
---@return string? err
function http.request(t) end

---@param url string
---@param opts? ringline.requestopts without url and method
---@return ringline.response|nil res
---@return string? err
function http.get(url, opts) end

---@param url string "ws://..." or "wss://..."
---@param opts? ringline.wsopts
---@return ringline.ws|nil ws
---@return string? err
function http.websocket_connect(url, opts) end

---Upgrades the handler's request to a WebSocket (writes the 101).
---@param req ringline.http.req
---@param res ringline.http.res
---@param opts? ringline.wsopts
---@return ringline.ws|nil ws
---@return string? err
function http.websocket(req, res, opts) end

---@return string|nil body
---@return string? err
function response:body() end

---@param size? integer largest piece (default 65536)
---@return fun(): string|nil, string?
function response:body_reader(size) end

---@return true
function response:close() end

------------------------------------------------------------------------
-- WebSocket: require "ringline.websocket"
------------------------------------------------------------------------

---@class ringline.wsopts
---@field max_payload_len? integer largest frame accepted (default 65535; else close 1009)
---@field auto_pong? boolean       answer pings without returning them (default true)
---@field timeout? number          ms, the connection's read and send timeouts
---@field protocols? string|string[] connect: Sec-WebSocket-Protocol
---@field origin? string           connect: Origin
---@field headers? table<string, string> connect: extra headers
---@field ssl? true|table          connect to wss://: connect's ssl table
---@field protocol? string         accept: the Sec-WebSocket-Protocol answered
---@field max_header_bytes? integer handshake's header block (default 16384)
---@field client? boolean          new: this end is the client

---@class ringline.websocket_module
local websocket = {}

---@param url string
---@param opts? ringline.wsopts
---@return ringline.ws|nil ws
---@return string? err
function websocket.connect(url, opts) end

---@param conn ringline.conn
---@param req? {method: string, version: string?, headers: table<string, string>}
---@param opts? ringline.wsopts
---@return ringline.ws|nil ws
---@return string? err
---@return integer? status 400 or 426: the answer the caller owes
function websocket.accept(conn, req, opts) end

---@param conn ringline.conn
---@param opts? ringline.wsopts
---@return ringline.ws
function websocket.new(conn, opts) end

---@class ringline.ws
---@field protocol? string the subprotocol the server chose (client side)
local ws = {}

---@return string|nil data
---@return '"text"'|'"binary"'|'"continuation"'|'"close"'|'"ping"'|'"pong"'|nil typ
---@return string|integer|nil err "again" for a fragment, the code for a close, or the error
function ws:recv_frame() end

---@param data string
---@return integer|nil bytes
---@return string? err
function ws:send_text(data) end

---@param data string
---@return integer|nil bytes
---@return string? err
function ws:send_binary(data) end

---@param data? string at most 125 bytes
---@return integer|nil bytes
---@return string? err
function ws:send_ping(data) end

---@param data? string at most 125 bytes
---@return integer|nil bytes
---@return string? err
function ws:send_pong(data) end

---@param code? integer
---@param reason? string
---@return integer|nil bytes
---@return string? err
function ws:send_close(code, reason) end

---@param fin boolean
---@param opcode integer 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong
---@param payload string
---@return integer|nil bytes
---@return string? err
function ws:send_frame(fin, opcode, payload) end

---@param ms number
function ws:set_timeout(ms) end

---@return true|nil ok
---@return string? err
function ws:close() end

------------------------------------------------------------------------
-- Shared dictionaries: ringline.shared.NAME (ngx.shared.DICT)
------------------------------------------------------------------------

---@class ringline.shdict
local dict = {}

---The dictionaries declared with shared_dicts or --shared-dict, by name.
---@type table<string, ringline.shdict>
ringline.shared = {}

---@param key string
---@return string|number|boolean|nil value
---@return integer|string|nil flags_or_err
function dict:get(key) end

---@param key string
---@return string|number|boolean|nil value
---@return integer|string|nil flags_or_err
---@return boolean? stale
function dict:get_stale(key) end

---@param key string
---@param value string|number|boolean|nil nil deletes
---@param exptime? number seconds, 0 = never
---@param flags? integer
---@return boolean|nil ok
---@return string? err
---@return boolean? forcible
function dict:set(key, value, exptime, flags) end

---@param key string
---@param value string|number|boolean|nil
---@param exptime? number
---@param flags? integer
---@return boolean|nil ok
---@return string? err
---@return boolean? forcible
function dict:safe_set(key, value, exptime, flags) end

---@param key string
---@param value string|number|boolean|nil
---@param exptime? number
---@param flags? integer
---@return boolean|nil ok
---@return string? err
---@return boolean? forcible
function dict:add(key, value, exptime, flags) end

---@param key string
---@param value string|number|boolean|nil
---@param exptime? number
---@param flags? integer
---@return boolean|nil ok
---@return string? err
---@return boolean? forcible
function dict:safe_add(key, value, exptime, flags) end

---@param key string
---@param value string|number|boolean|nil
---@param exptime? number
---@param flags? integer
---@return boolean|nil ok
---@return string? err
---@return boolean? forcible
function dict:replace(key, value, exptime, flags) end

---@param key string
---@return boolean|nil ok
---@return string? err
function dict:delete(key) end

---@param key string
---@param value number
---@param init? number
---@param init_ttl? number seconds, with init
---@return number|nil newval
---@return string? err
---@return boolean? forcible
function dict:incr(key, value, init, init_ttl) end

---@param key string
---@param value string|number
---@return integer|nil length
---@return string? err
function dict:lpush(key, value) end

---@param key string
---@param value string|number
---@return integer|nil length
---@return string? err
function dict:rpush(key, value) end

---@param key string
---@return string|number|nil value
---@return string? err
function dict:lpop(key) end

---@param key string
---@return string|number|nil value
---@return string? err
function dict:rpop(key) end

---@param key string
---@return integer|nil length
---@return string? err
function dict:llen(key) end

---@param key string
---@return number|nil ttl seconds, 0 = never
---@return string? err
function dict:ttl(key) end

---@param key string
---@param exptime number seconds, 0 = never
---@return true|nil ok
---@return string? err
function dict:expire(key, exptime) end

function dict:flush_all() end

---@param max_count? integer 0 or nil: all
---@return integer freed
function dict:flush_expired(max_count) end

---@param max_count? integer default 1024, 0: all
---@return string[]
function dict:get_keys(max_count) end

---@return integer bytes
function dict:capacity() end

---@return integer bytes
function dict:free_space() end

------------------------------------------------------------------------
-- Regular expressions: require "ringline.re" (ngx.re)
------------------------------------------------------------------------

---@class ringline.re_module
local re = {}

---@alias ringline.captures table<integer|string, string|false|string[]>

---@param subject string|number
---@param regex string
---@param options? string letters a d D i j J m o s u U x
---@param ctx? {pos?: integer}
---@param res_table? table
---@return ringline.captures|nil captures
---@return string? err
function re.match(subject, regex, options, ctx, res_table) end

---@param subject string|number
---@param regex string
---@param options? string
---@param ctx? {pos?: integer}
---@param nth? integer
---@return integer|nil from
---@return integer|nil to
---@return string? err
function re.find(subject, regex, options, ctx, nth) end

---@param subject string|number
---@param regex string
---@param options? string
---@return (fun(): ringline.captures|nil, string?)|nil iterator
---@return string? err
function re.gmatch(subject, regex, options) end

---@param subject string|number
---@param regex string
---@param replace string|number|fun(m: ringline.captures): string|number
---@param options? string
---@return string|nil newstr
---@return integer|nil n
---@return string? err
function re.sub(subject, regex, replace, options) end

---@param subject string|number
---@param regex string
---@param replace string|number|fun(m: ringline.captures): string|number
---@param options? string
---@return string|nil newstr
---@return integer|nil n
---@return string? err
function re.gsub(subject, regex, replace, options) end

---@param subject string|number
---@param regex string
---@param options? string
---@param ctx? {pos?: integer}
---@param max? integer
---@param res? table
---@return string[]|nil pieces
---@return string? err
function re.split(subject, regex, options, ctx, max, res) end

---@param name "jit_stack_size"|"regex_cache_max_entries"
---@param value integer
---@return true|nil ok
---@return string? err
function re.opt(name, value) end

---@return integer
function re.cache_count() end

return ringline
