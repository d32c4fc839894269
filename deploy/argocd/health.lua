-- Argo CD health check for cilvest.io/CilvestPipeline. Argo CD runs it in gopher-lua (Lua 5.1 semantics, no io/os):
-- `obj` is the live object, and the table returned is its health. Argo CD does not look at a pipeline's children,
-- so the operator copies their health into status, and this script reads only status:
--
--   no status yet, or status.observedGeneration behind metadata.generation  -> Progressing (not looked at yet)
--   Degraded=True                                                           -> Degraded, with its message
--   spec.schedule.suspend, or phase Suspended                               -> Suspended
--   Ready=True                                                              -> Healthy
--   anything else                                                           -> Progressing, with what it waits for
local hs = {}

local function condition(status, kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function nonempty(text)
  return text ~= nil and text ~= ""
end

local status = obj.status
local generation = obj.metadata ~= nil and obj.metadata.generation or nil

if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for cilvest-operator to report status"
  return hs
end

if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for cilvest-operator to observe generation " .. tostring(generation)
    .. " (status is for " .. tostring(status.observedGeneration) .. ")"
  return hs
end

local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  if nonempty(degraded.message) then
    hs.message = degraded.message
  else
    hs.message = degraded.reason or "Degraded"
  end
  return hs
end

local suspended = obj.spec ~= nil and obj.spec.schedule ~= nil and obj.spec.schedule.suspend == true
if suspended or status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "spec.schedule.suspend is true: the producer and the daily job are stopped"
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = nonempty(ready.message) and ready.message or "Ready"
  return hs
end

local progressing = condition(status, "Progressing")
hs.status = "Progressing"
if progressing ~= nil and nonempty(progressing.message) then
  hs.message = progressing.message
elseif ready ~= nil and nonempty(ready.message) then
  hs.message = ready.message
else
  hs.message = "Waiting for the pipeline's children to become ready"
end
return hs
