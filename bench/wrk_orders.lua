-- placeOrder mutations, the rule of bench/order_load.py: request n is sent with the token
-- of trader n mod #tokens (BENCH_TOKENS_FILE, one per line), SELL for odd n and BUY for
-- even n, LIMIT 0.001 BTC at a random whole-dollar price within BENCH_SPREAD of BENCH_MID.
-- Printed at the end: "BENCH_NOT_PLACED <n>" (answers other than an OrderPayload) and
-- "BENCH_QUEUED <n>" (status NEW: the engine had not applied it within the wait).
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
  if line ~= "" then tokens[#tokens + 1] = line end
end
local mid = tonumber(os.getenv("BENCH_MID") or "90000")
local spread = tonumber(os.getenv("BENCH_SPREAD") or "10")
math.randomseed(tonumber(os.getenv("BENCH_SEED") or "1"))

local query = "mutation Place($input: PlaceOrderInput!) { placeOrder(input: $input) { __typename"
  .. " ... on OrderPayload { order { id status filledQuantity averagePrice } }"
  .. " ... on Error { code message } } }"
local n = 0
not_placed = 0
queued = 0

function request()
  n = n + 1
  local side = (n % 2 == 1) and "SELL" or "BUY"
  local price = mid + math.random(-spread, spread)
  local body = string.format(
    '{"query":"%s","variables":{"input":{"symbol":"BTC/USDT","side":"%s","type":"LIMIT",'
      .. '"quantity":"0.001","price":"%d.00"}}}',
    query, side, price)
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1],
  }
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"__typename":"OrderPayload"', 1, true) then
    not_placed = not_placed + 1
  elseif string.find(body, '"status":"NEW"', 1, true) then
    queued = queued + 1
  end
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local refused, late = 0, 0
  for _, thread in ipairs(threads) do
    refused = refused + thread:get("not_placed")
    late = late + thread:get("queued")
  end
  io.write(string.format("BENCH_NOT_PLACED %d\nBENCH_QUEUED %d\n", refused, late))
end
