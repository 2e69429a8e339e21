---@meta ringline.resp
-- LuaCATS definitions of ringline.resp (the Redis protocol) for
-- lua-language-server. Never loaded at run time (the implementation is
-- lua/ringline/resp.lua); docs/api.md is the reference, and
-- spec/api_doc_spec.lua checks that both name the same functions.

---@class ringline.resp.readeropts
---@field max_bulk_bytes? integer    longest bulk string (default 512 MiB, at most what a command may take)
---@field max_array_len? integer     most arguments of one command (default 1048576)
---@field max_inline_bytes? integer  longest line without its end (default 65536)
---@field max_command_bytes? integer most bytes one command may take (default the max_receive key)

---An encoded reply: what conn:send takes.
---@alias ringline.resp.value string|ringline.resp.value[]

---The Redis protocol: require "ringline.resp".
---@class ringline.resp
local resp = {}

---A reader of the commands a connection receives.
---@param conn ringline.conn
---@param opts? ringline.resp.readeropts
---@return ringline.resp.reader
function resp.reader(conn, opts) end

---A simple string reply: "+s\r\n".
---@param s string no CR or LF
---@return string
function resp.simple(s) end

---An error reply: "-s\r\n" (CR and LF become spaces).
---@param s string e.g. "ERR no such key"
---@return string
function resp.error(s) end

---An integer reply: ":n\r\n".
---@param n integer|ffi.cdata* a whole number, or an int64_t/uint64_t
---@return string
function resp.integer(n) end

---A bulk string reply ("$-1\r\n" for nil).
---@param s string|number|nil
---@return ringline.resp.value
function resp.bulk(s) end

---The null bulk string, "$-1\r\n".
resp.null = "$-1\r\n"

---An array reply: strings and numbers as bulk strings, false (or a hole
---below n) as null, tables as already encoded values.
---@param t table
---@param n? integer the element count (default #t)
---@return ringline.resp.value
function resp.array(t, n) end

---@class ringline.resp.reader
local reader = {}

---The next command: an array of strings; nil, err ("closed", "timeout",
---"canceled", "too large", "protocol error" with the words as a third result).
---@return string[]|nil cmd
---@return string? err
---@return string? why
function reader:read() end

---How many commands read() returns without touching the connection.
---@return integer
function reader:pending() end

return resp
