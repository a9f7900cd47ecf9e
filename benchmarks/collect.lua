local events_per_request = tonumber(os.getenv("EVENTS") or "1")
local counter = 0
local thread_id = math.random(0, 65535)
local function uuid()
  counter = counter + 1
  return string.format("%08x-%04x-4%03x-8%03x-%012x", thread_id, counter % 65536,
    math.random(0, 4095), math.random(0, 4095), counter)
end
request = function()
  local parts = {}
  for i = 1, events_per_request do
    parts[i] = '{"event_id":"' .. uuid() .. '","type":"page_view","occurred_at":"2026-11-24T10:00:00Z",' ..
      '"visitor_id":"v' .. counter .. '","session_id":"s1","url":"https://shop.siteline.test/p/' .. i .. '",' ..
      '"referrer":"https://www.google.com/","title":"Product","screen":"1920x1080","language":"de-DE"}'
  end
  local body = '{"site_id":"demo","sent_at":"2026-11-24T10:00:01Z","events":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format("POST", nil, {["Content-Type"] = "text/plain",
    ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"}, body)
end
