-- The gateway's admission, inside Envoy (the gateway listener's Lua filter; see
-- docs/guides/gateway.md, "How it decides"). Per request it costs no call out of Envoy:
--
-- * A key's GRANT (its tenant, subscription, plan, tier limit, route costs and, for a capped plan,
--   the period's quota with its recorded usage as a floor; or the key's denial: 401, 403, 402,
--   429 QUOTA_EXHAUSTED of a hard limit) comes from the billing server's /grant
--   (server/transport/gateway_http.py) and is trusted for the TTL the server sends (2 s): so a
--   revoked key, a plan change, a cancel or a new denial takes effect within 2 s here, plus at
--   most the server's own read (the contract allows 5 s).
-- * The tier window (a sliding-window log, exact: at most `limit` units in any rolling 60 s) and
--   the quota counter live here, in this Lua state. Envoy runs ONE worker thread
--   (server/envoy_launcher.py: --concurrency 1), so this state is shared by every request of the
--   gateway and no two requests interleave inside this code: exact under any concurrency, and
--   across billing server replicas, which all sit behind this one Envoy. Several Envoys would
--   each count on their own (at most N x the limit); a restart forgets the window, and the
--   quota restarts from the recorded usage (its floor), as the in-process limiter did.
-- * A request of cost n takes n units from the window (and quota) or nothing.
-- * What metering needs rides in the access-log entry's dynamic metadata (namespace "billing"):
--   the subscription, the cost, the tier, and for a refusal its reason.

local WINDOW = 60
local MAX_GRANTS = 10000
local GRANTS = {} -- key -> grant (see fetch)
local GRANT_COUNT = 0
local LOGS = {} -- tenant -> {first, last, [i] = admission time}: the sliding-window log
local QUOTAS = {} -- quota name (subscription and period) -> units admitted by this Envoy

local function now(handle)
  return tonumber(handle:timestampString(EnvoyTimestampResolution.MICROSECOND)) / 1e6
end

local function api_key(headers)
  local authorization = headers:get("authorization")
  if authorization then
    local scheme, token = authorization:match("^%s*(%S+)%s+(.-)%s*$")
    if scheme and scheme:lower() == "bearer" and token ~= "" then
      return token
    end
  end
  local key = headers:get("x-api-key")
  key = key and key:match("^%s*(.-)%s*$")
  if key and key ~= "" then
    return key
  end
  return ""
end

local function routes_of(text)
  local routes = {}
  for method, prefix, cost in (text or ""):gmatch("(%S+) (%S+) (%d+)") do
    routes[#routes + 1] = {method = method, prefix = prefix, cost = tonumber(cost)}
  end
  return routes
end

-- The longest matching prefix among the routes for this method or "*" (an exact method beats
-- "*" on the same prefix); 1 when none matches. The query is not part of the path.
local function route_cost(routes, method, path)
  local bare = path:match("^[^?]*")
  local best, best_length, best_exact = 1, -1, false
  for _, route in ipairs(routes) do
    if (route.method == "*" or route.method == method) and bare:sub(1, #route.prefix) == route.prefix then
      local exact = route.method ~= "*"
      if #route.prefix > best_length or (#route.prefix == best_length and exact and not best_exact) then
        best, best_length, best_exact = route.cost, #route.prefix, exact
      end
    end
  end
  return best
end

local function json_string(text)
  return '"' .. text:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function status_body(code, message, reason, retry_after)
  local details = '{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"' .. reason .. '","domain":"billing.v1"}'
  if retry_after then
    details = details .. ',{"@type":"type.googleapis.com/google.rpc.RetryInfo","retry_delay":"' .. retry_after .. 's"}'
  end
  return '{"code":' .. code .. ',"message":' .. json_string(message) .. ',"details":[' .. details .. ']}'
end

local function unavailable(handle)
  handle:respond(
    {[":status"] = "503", ["content-type"] = "application/json"},
    status_body(14, "the gateway cannot decide now; retry later", "UNAVAILABLE")
  )
end

-- The grant of `key`, fetched from the billing server when absent or older than its TTL.
local function grant_of(handle, key, t)
  local grant = GRANTS[key]
  if grant and t < grant.expires then
    return grant
  end
  local request = {
    [":method"] = "GET",
    [":path"] = "/grant",
    [":authority"] = "gateway-authz",
    ["x-billing-gateway-key"] = handle:metadata():get("gateway_key"),
  }
  if key ~= "" then
    request["x-billing-key"] = key
  end
  local ok, headers, body = pcall(handle.httpCall, handle, "gateway_authz", request, "", 2000)
  local status = ok and headers and tonumber(headers[":status"])
  if not status or status >= 500 then
    return nil
  end
  grant = {expires = t + tonumber(headers["x-billing-ttl"] or "1"), status = status}
  if status == 200 then
    grant.tenant = headers["x-tenant-id"]
    grant.plan = headers["x-billing-plan"]
    grant.subscription = headers["x-billing-subscription"]
    grant.tier = headers["x-billing-tier"]
    grant.limit = tonumber(headers["x-billing-limit"])
    grant.routes = routes_of(headers["x-billing-routes"])
    local quota = headers["x-billing-quota"]
    if quota then
      local name, included, floor, ends, length = quota:match("(%S+) (%d+) (%d+) (%d+) (%d+)")
      grant.quota = {
        name = name, included = tonumber(included), floor = tonumber(floor), ends = tonumber(ends), length = tonumber(length),
      }
    end
  else
    grant.body = body
    grant.content_type = headers["content-type"]
    grant.retry_after = headers["retry-after"]
  end
  if not GRANTS[key] then
    if GRANT_COUNT >= MAX_GRANTS then
      GRANTS, GRANT_COUNT = {}, 0
    end
    GRANT_COUNT = GRANT_COUNT + 1
  end
  GRANTS[key] = grant
  return grant
end

-- One step of the sliding-window log (and the quota) for `cost` units; returns
-- allowed, refusal reason, remaining, reset seconds, quota units used after the step.
local function hit(grant, t, cost)
  local log = LOGS[grant.tenant]
  if not log then
    log = {first = 1, last = 0}
    LOGS[grant.tenant] = log
  end
  local horizon = t - WINDOW
  while log.first <= log.last and log[log.first] <= horizon do
    log[log.first] = nil
    log.first = log.first + 1
  end
  local quota, used = grant.quota, 0
  local reason = nil
  if quota then
    used = math.max(QUOTAS[quota.name] or 0, quota.floor)
    if used + cost > quota.included then
      reason = "QUOTA_EXHAUSTED"
    end
  end
  local count = log.last - log.first + 1
  if not reason and count + cost > grant.limit then
    reason = "RATE_LIMITED"
  end
  if not reason then
    local stamp = math.max(t, log[log.last] or t) -- time never runs backwards in the log
    for _ = 1, cost do
      log.last = log.last + 1
      log[log.last] = stamp
    end
    count = count + cost
    if quota then
      used = used + cost
      QUOTAS[quota.name] = used
    end
  end
  local reset = 0
  if count > 0 then
    reset = math.max(0, math.ceil(math.floor((log[log.first] - t + WINDOW) * 1e6 + 0.5) / 1e6))
  else
    LOGS[grant.tenant] = nil
  end
  return reason == nil, reason, math.max(0, grant.limit - count), reset, used
end

-- x-ratelimit-* and the IETF RateLimit-Policy / RateLimit (draft-ietf-httpapi-ratelimit-headers-12:
-- the tier window as "minute", a capped period as "period").
local function limit_headers(headers, grant, remaining, reset, used, t)
  headers["x-ratelimit-limit"] = tostring(grant.limit)
  headers["x-ratelimit-remaining"] = tostring(remaining)
  headers["x-ratelimit-reset"] = tostring(reset)
  local policy = '"minute";q=' .. grant.limit .. ";w=" .. WINDOW
  local state = '"minute";r=' .. remaining .. ";t=" .. reset
  local quota = grant.quota
  if quota then
    policy = policy .. ', "period";q=' .. quota.included .. ";w=" .. quota.length
    state = state .. ', "period";r=' .. math.max(0, quota.included - used) .. ";t=" .. math.max(0, math.ceil(quota.ends - t))
  end
  headers["ratelimit-policy"] = policy
  headers["ratelimit"] = state
  return headers
end

local function admit(handle)
  local t = now(handle)
  local grant = grant_of(handle, api_key(handle:headers()), t)
  -- Read again: a header map read before grant_of's call out cannot be used after it.
  local headers = handle:headers()
  if not grant then
    return unavailable(handle)
  end
  if grant.status ~= 200 then
    local reply = {[":status"] = tostring(grant.status), ["content-type"] = grant.content_type or "application/json"}
    if grant.retry_after then
      reply["retry-after"] = grant.retry_after
    end
    return handle:respond(reply, grant.body or "")
  end
  local method = headers:get(":method")
  local cost = route_cost(grant.routes, method, headers:get(":path"))
  local allowed, reason, remaining, reset, used = hit(grant, t, cost)
  local metadata = handle:streamInfo():dynamicMetadata()
  metadata:set("billing", "subscription", grant.subscription)
  metadata:set("billing", "tenant", grant.tenant)
  metadata:set("billing", "tier", grant.tier)
  metadata:set("billing", "cost", cost)
  if not allowed then
    metadata:set("billing", "refused", reason)
    local retry_after, message
    if reason == "QUOTA_EXHAUSTED" then
      retry_after = math.max(1, math.ceil(grant.quota.ends - t))
      message = "plan '" .. grant.plan .. "' has used its " .. grant.quota.included
        .. " included requests this period and bills no overage"
    else
      retry_after = math.max(1, reset)
      message = "rate limit of " .. grant.limit .. " requests per minute exceeded for plan '" .. grant.plan .. "'"
    end
    local reply = limit_headers(
      {[":status"] = "429", ["content-type"] = "application/json", ["retry-after"] = tostring(retry_after)},
      grant, remaining, reset, used, t
    )
    return handle:respond(reply, status_body(8, message, reason, retry_after))
  end
  headers:replace("x-tenant-id", grant.tenant)
  headers:replace("x-billing-plan", grant.plan)
  -- For the response (Lua keeps nothing per stream but its metadata): one packed string.
  local shown = limit_headers({}, grant, remaining, reset, used, t)
  metadata:set("billing", "limits", table.concat({
    shown["x-ratelimit-limit"], shown["x-ratelimit-remaining"], shown["x-ratelimit-reset"],
    shown["ratelimit-policy"], shown["ratelimit"],
  }, "|"))
end

-- An error in this script would let the request through unchecked (Envoy goes on after a Lua
-- error): it answers 503 instead, like every other failure to decide (fail closed).
function envoy_on_request(handle)
  local ok, problem = pcall(admit, handle)
  if not ok then
    handle:logErr("gateway admission failed: " .. tostring(problem))
    unavailable(handle)
  end
end

function envoy_on_response(handle)
  local billing = handle:streamInfo():dynamicMetadata():get("billing")
  local packed = billing and billing["limits"]
  if packed then
    local limit, remaining, reset, policy, state = packed:match("^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$")
    local headers = handle:headers()
    headers:replace("x-ratelimit-limit", limit)
    headers:replace("x-ratelimit-remaining", remaining)
    headers:replace("x-ratelimit-reset", reset)
    headers:replace("ratelimit-policy", policy)
    headers:replace("ratelimit", state)
  end
end
