-- Paces wrk: each connection waits this many ms between requests, so the
-- soak's HTTP load is sustained and bounded rather than as fast as 2 cores go
-- (past what the collector parses the kernel drops records: counted, but no
-- longer an exact check).
local pause = tonumber(os.getenv("RFSOAK_WRK_DELAY_MS") or "4")
function delay()
  return pause
end
