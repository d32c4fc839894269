-- Runs an Argo CD health script on one object, the way Argo CD does, in a plain Lua 5.1 interpreter:
--
--   lua5.1 run.lua health.lua < object.json      prints the status on line 1 and the message on line 2
--
-- Argo CD hands the script the live object as `obj` and gives it only the base, string, table and math libraries
-- (no io, os or require), so the script runs here with exactly those; touching anything else fails the test.
-- The object is JSON (kubectl get -o json, or a fixture beside this file), read with the small decoder below.

local function decode(text)
  local pos = 1

  local function fail(what)
    error(string.format("invalid JSON at byte %d: %s", pos, what), 0)
  end

  local function skip()
    pos = string.find(text, "[^ \t\r\n]", pos) or (#text + 1)
  end

  local value

  local function utf8(code)
    if code < 0x80 then
      return string.char(code)
    elseif code < 0x800 then
      return string.char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40)
    end
    return string.char(0xE0 + math.floor(code / 0x1000), 0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
  end

  local escapes = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }

  local function str()
    pos = pos + 1 -- the opening quote
    local parts = {}
    while true do
      local c = string.sub(text, pos, pos)
      if c == "" then
        fail("unterminated string")
      elseif c == '"' then
        pos = pos + 1
        return table.concat(parts)
      elseif c == "\\" then
        local e = string.sub(text, pos + 1, pos + 1)
        if e == "u" then
          local hex = string.sub(text, pos + 2, pos + 5)
          local code = tonumber(hex, 16) or fail("bad \\u escape")
          table.insert(parts, utf8(code))
          pos = pos + 6
        else
          table.insert(parts, escapes[e] or fail("bad escape \\" .. e))
          pos = pos + 2
        end
      else
        local stop = string.find(text, '["\\]', pos) or fail("unterminated string")
        table.insert(parts, string.sub(text, pos, stop - 1))
        pos = stop
      end
    end
  end

  local function array()
    pos = pos + 1
    local items, n = {}, 0
    skip()
    if string.sub(text, pos, pos) == "]" then
      pos = pos + 1
      return items
    end
    while true do
      n = n + 1
      items[n] = value()
      skip()
      local c = string.sub(text, pos, pos)
      pos = pos + 1
      if c == "]" then
        return items
      elseif c ~= "," then
        fail("expected , or ] in an array")
      end
    end
  end

  local function object()
    pos = pos + 1
    local fields = {}
    skip()
    if string.sub(text, pos, pos) == "}" then
      pos = pos + 1
      return fields
    end
    while true do
      skip()
      if string.sub(text, pos, pos) ~= '"' then
        fail("expected a key")
      end
      local key = str()
      skip()
      if string.sub(text, pos, pos) ~= ":" then
        fail("expected :")
      end
      pos = pos + 1
      fields[key] = value()
      skip()
      local c = string.sub(text, pos, pos)
      pos = pos + 1
      if c == "}" then
        return fields
      elseif c ~= "," then
        fail("expected , or } in an object")
      end
    end
  end

  value = function()
    skip()
    local c = string.sub(text, pos, pos)
    if c == "{" then
      return object()
    elseif c == "[" then
      return array()
    elseif c == '"' then
      return str()
    end
    for word, v in pairs({ ["true"] = true, ["false"] = false }) do
      if string.sub(text, pos, pos + #word - 1) == word then
        pos = pos + #word
        return v
      end
    end
    if string.sub(text, pos, pos + 3) == "null" then
      pos = pos + 4
      return nil
    end
    local number = string.match(text, "^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if number == nil or number == "" then
      fail("unexpected character " .. c)
    end
    pos = pos + #number
    return tonumber(number) or fail("bad number " .. number)
  end

  local result = value()
  skip()
  if pos <= #text then
    fail("trailing characters")
  end
  return result
end

local script = assert(arg[1], "usage: lua5.1 run.lua HEALTH_SCRIPT < object.json")
local chunk = assert(loadfile(script))
local env = {
  obj = decode(io.read("*a")),
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall, select = select,
  tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
  string = string, table = table, math = math,
}
setfenv(chunk, env)
local health = chunk()
if type(health) ~= "table" or type(health.status) ~= "string" then
  error("the health script returned no status", 0)
end
io.write(health.status, "\n", health.message or "", "\n")
