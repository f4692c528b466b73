# The floor of an evaluation that captures its output: parse, sink stdout into the harness's
# spool, evaluate and print each visible value, read the spool back, return the same result
# shape as `.rsession$execute()`. No messages, warnings, errors, interrupts, plots, output
# budget or JIT handling. Not part of the harness: docs/benchmarks.md measures
# `.rsession$execute('1+1')` against `floor_execute('1+1')` over QAP1 with the rserve crate's
# `eval_bench` example, to show how much of the harness's time its features take.
# Needs the harness installed and initialised first (`.rsession$init()`), for the spool.
floor_execute <- local({
  sp <- .rsession$state$spool
  function(code) {
    exprs <- parse(text = code, keep.source = FALSE, encoding = "UTF-8")
    .Internal(sink(sp$w, FALSE, FALSE, FALSE))
    for (expr in exprs) {
      res <- withVisible(eval(expr, globalenv()))
      if (res$visible) print(res$value)
    }
    .Internal(sink(-1L, FALSE, FALSE, FALSE))
    .Internal(flush(sp$w))
    .Internal(seek(sp$r, as.double(sp$pos), 1L, 1L))
    b <- .Internal(readBin(sp$r, "raw", 65536L, NA_integer_, TRUE, FALSE))
    sp$pos <- sp$pos + length(b)
    list(status = "ok",
         events = list(list(type = "value", text = rawToChar(b), call = NA_character_)),
         truncated = FALSE, omitted_bytes = 0, spool_end = sp$pos)
  }
})
