-- A headless Neovim (0.7 API) as a real LSP client of `verdict lsp`:
--   VERDICT_BIN=… VERDICT_NVIM_OUT=… nvim --headless --clean -n -c 'luafile e2e.lua' demo.verdict
-- Attaches the server to the buffer, waits for its diagnostics, asks for two hovers and the
-- document symbols through the client, and writes what it received to $VERDICT_NVIM_OUT
-- (one line each; diagnostics with Neovim's 1-based lines and 0-based byte columns).

local out = os.getenv("VERDICT_NVIM_OUT")
local bin = os.getenv("VERDICT_BIN")

local function finish(lines, code)
  vim.fn.writefile(lines, out)
  vim.cmd(code == 0 and "qa!" or "cq!")
end

local client_id = vim.lsp.start_client({
  name = "verdict",
  cmd = { bin, "lsp" },
  root_dir = vim.fn.getcwd(),
})
if not client_id then
  finish({ "error: the client did not start" }, 1)
  return
end
vim.lsp.buf_attach_client(0, client_id)

local received = vim.wait(20000, function()
  return #vim.diagnostic.get(0) > 0
end, 50)
if not received then
  finish({ "error: no diagnostics within 20 s" }, 1)
  return
end

local severity = { "error", "warning", "info", "hint" }
local lines = {}
for _, d in ipairs(vim.diagnostic.get(0)) do
  local code = d.code or (d.user_data and d.user_data.lsp and d.user_data.lsp.code) or "?"
  local message = vim.split(d.message, "\n", { plain = true })[1]
  table.insert(lines, string.format("diagnostic %d:%d-%d:%d %s %s %s",
    d.lnum + 1, d.col, d.end_lnum + 1, d.end_col, severity[d.severity] or "?", code, message))
end
table.sort(lines)

-- A hover at a 0-based position: its `n`-th line.
local uri = vim.uri_from_bufnr(0)
local function hover_line(line, character, n)
  local hover = vim.lsp.buf_request_sync(0, "textDocument/hover",
    { textDocument = { uri = uri }, position = { line = line, character = character } }, 10000)
  local text = "none"
  for _, r in pairs(hover or {}) do
    if r.result and r.result.contents then
      text = vim.split(r.result.contents.value, "\n", { plain = true })[n] or "?"
    end
  end
  return text
end
-- The use of `is_admin` (line 10, character 10): its definition; the state read `spend.day`
-- (line 41, character 12): its window in words.
table.insert(lines, "hover " .. hover_line(10, 10, 2))
table.insert(lines, "hover " .. hover_line(41, 12, 4))

local symbols = vim.lsp.buf_request_sync(0, "textDocument/documentSymbol", { textDocument = { uri = uri } }, 10000)
for _, r in pairs(symbols or {}) do
  for _, s in ipairs(r.result or {}) do
    local children = {}
    for _, c in ipairs(s.children or {}) do
      table.insert(children, c.name)
    end
    table.insert(lines, "symbol " .. s.name .. " > " .. table.concat(children, ", "))
  end
end

vim.lsp.stop_client(client_id)
finish(lines, 0)
