-- Argo CD health check for flowreg.dev/FlowRegistry (resource.customizations.health).
-- Healthy:     Ready=True, observed at the current generation.
-- Suspended:   spec.suspend, or Ready reason Suspended.
-- Degraded:    Stalled=True, or Ready=False for a reason that will not fix itself.
-- Progressing: anything else (not yet observed, Reconciling=True: a sync under way or a retry
--              pending), as kstatus (Flux) judges it too.
local hs = { status = "Progressing", message = "Waiting for the operator" }
local degraded = { InvalidSpec = true, DeletionGuard = true, Conflict = true,
                   StoreIncompatible = true }

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Reconciliation is suspended"
  return hs
end
if obj.status == nil or obj.status.conditions == nil then
  return hs
end

local generation = obj.metadata.generation
local ready, stalled, reconciling = nil, nil, nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then ready = condition end
  if condition.type == "Stalled" then stalled = condition end
  if condition.type == "Reconciling" then reconciling = condition end
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (stalled.reason or "Stalled") .. ": " .. (stalled.message or "")
  return hs
end
if ready == nil then
  return hs
end
if ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = ready.message or "Reconciliation is suspended"
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = (reconciling.reason or "Progressing") .. ": " .. (reconciling.message or "")
  return hs
end
local observed = obj.status.observedGeneration
if ready.status == "True" and (generation == nil or observed == generation) then
  hs.status = "Healthy"
  hs.message = ready.message or "Synced"
  return hs
end
if ready.status == "False" and degraded[ready.reason] then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. (ready.message or "")
  return hs
end
hs.message = (ready.reason or "Progressing") .. ": " .. (ready.message or "")
return hs
