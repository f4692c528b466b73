# Time one evaluation of `1+1` (or COLD_CODE) with each given harness after evicting the CPU
# caches, all interleaved in one R process: a scratch harness variant against the current one,
# where an R that waited on its socket while other processes ran pays cache misses for every
# closure call and file check. Not part of the harness; docs/benchmarks.md ("MCP execution")
# gives the command and results.
#
#   cat crates/rsession-harness/r/{harness,harness_data,harness_db,harness_checkpoint}.R > /tmp/current.R
#   Rscript crates/rsession-harness/bench/cold.R 400 /tmp/out.txt /tmp/current.R /tmp/variant.R
#
# Arguments: iterations, the output file (the harness points R's output at its spool, so the
# medians go to a file), then harness files (each the four harness sources in one file, given
# by absolute path). Writes the median microseconds of the last 90 % of the iterations per
# column: "raw" (eval of the parsed code), "floor" (bench/floor.R), then each harness file.
args <- commandArgs(TRUE)
n <- as.integer(args[[1L]])
out <- args[[2L]]
files <- args[-(1:2)]
code <- Sys.getenv("COLD_CODE", "1+1")
floor_file <- file.path(dirname(normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))), "floor.R")
hs <- list()
for (k in seq_along(files)) {
  # Each copy gets its own entry name, attach name and spool, so they can live side by side.
  src <- readLines(files[[k]])
  src <- gsub("rsession-spool-%d", sprintf("rsession-spool%d-%%d", k), src, fixed = TRUE)
  src <- gsub("\"rsession:harness\"", sprintf("\"rsession:harness%d\"", k), src, fixed = TRUE)
  src <- gsub("\".rsession\"", sprintf("\".rsession%d\"", k), src, fixed = TRUE)
  eval(parse(text = src), globalenv())
  h <- get(sprintf(".rsession%d", k))
  h$init(tempfile())
  hs[[basename(files[[k]])]] <- h
}
.rsession <- hs[[1L]]
source(floor_file)
# Summing 48 MB of integers replaces what the caches held without allocating.
big <- seq_len(12e6) + 0L
evict <- function() invisible(sum(big))
cols <- c("raw", "floor", names(hs))
t <- matrix(NA_real_, n, length(cols), dimnames = list(NULL, cols))
for (i in seq_len(n)) {
  for (k in seq_along(cols)) {
    evict()
    t0 <- Sys.time()
    if (k == 1L) {
      eval(parse(text = code), globalenv())
    } else if (k == 2L) {
      floor_execute(code)
    } else {
      hs[[k - 2L]]$execute(code, 1048576, 20L, 10485760)
    }
    t[i, k] <- as.numeric(Sys.time() - t0) * 1e6
  }
}
kept <- seq_len(n) > n / 10
med <- round(apply(t[kept, , drop = FALSE], 2L, stats::median), 1L)
cat(paste(names(med), med), sep = "\n", file = out)
