# RSession evaluation harness.
#
# Sent by rsession-mcp over QAP1 (voidEval) right after login, so any R with
# Rserve works without extra packages. It defines one private environment,
# `.rsession`, reachable from a locked environment attached to the search path
# as "rsession:harness": `rm(list = ls(all.names = TRUE))` in the user's
# global environment cannot remove it.
#
# Entry points (called by rsession-mcp, never by users):
#   .rsession$init(workspace, library, plot_width, plot_height, plot_res)
#   .rsession$memory_state()   (also part of init's result, as `memory`)
#   .rsession$execute(code, max_output_bytes, max_plots, max_plot_bytes)
#   .rsession$list_files(path), $read_file(path, max_bytes, offset), $write_file(path, content, overwrite)
#   .rsession$install_package(pkgs, repos)
#   .rsession$compile()   (an Rserve parent that preloads the harness, before it listens)
#   (init() starts compiling in a background child where no parent did; execute() adopts it)
#
# execute() returns a plain list (no jsonlite) decoded by the QAP1 client:
#   status    "ok" | "error" | "parse_error" | "interrupted"
#   events    list of list(type, text, call) in the order they happened; type is
#             one of stdout, value, message, warning, error, plot, truncated.
#             error events also carry `traceback` (character, innermost last);
#             plot events carry `png` (raw) and text "<width>x<height>";
#             a truncated event carries `omitted_bytes` (double).
#   truncated TRUE when output went over max_output_bytes (head and tail kept)
#   omitted_bytes  bytes of output left out between head and tail
#   spool_end  spool offset (double) where the next evaluation's output starts
#
# Output is captured by sinking stdout and stderr into a spool file and
# reading back only what fits the byte budget (head, then a rolling tail), so
# a runaway print costs disk in the R temp dir, never memory here or in the
# server. File descriptors 1 and 2 point at the spool too, so what child
# processes (system(), system2()) print lands in order with R's own output,
# under the same cap. Every writer appends and the harness reads on from where
# it stopped, so a call with little output costs no truncation or reopening:
# the spool is emptied only after a call that leaves it over `spool_keep`
# bytes, or before one when something wrote to it between calls. While an
# evaluation runs, the server reads its last line (after the offset the
# previous result gave as `spool_end`) over a second connection for progress.
local({
  h <- new.env(parent = globalenv())
  state <- new.env(parent = emptyenv())
  h$state <- state
  state$workspace <- NULL
  state$devices <- integer()
  state$plot_seq <- 0L
  state$plot_opts <- list(width = 800L, height = 600L, res = 96L)
  state$png_backend <- "png"
  state$call <- NULL
  state$compiled <- FALSE
  state$bytecode <- NULL

  utf8_ok <- isTRUE(l10n_info()[["UTF-8"]])

  # Per-evaluation plumbing without base R's argument handling. The evaluation path makes the
  # .Internal calls that base R's functions make, with the arguments fixed: sink() and
  # sink.number() resolve `type` with match.arg() on every call, file.size() builds a data frame
  # of file.info() with three date columns, seek() resolves `origin` and `rw` with pmatch(),
  # readBin() checks `endian` and `what`, parse() and tryCatch() make several closure calls of
  # their own (src/library/base/R: sink.R, files.R, connections.R, readBin.R, parse.R,
  # conditions.R; unchanged since R 3.2). Each closure call costs an R that has just waited on
  # its socket several microseconds (docs/benchmarks.md, the MCP round trip), so the common path
  # of an evaluation calls them inline; these helpers serve the rarer paths.
  # Size in bytes of one file; NA when it does not exist.
  file_size <- function(path) .Internal(file.info(path, FALSE))$size
  flush_con <- function(con) .Internal(flush(con))
  seek_read <- function(con, pos) .Internal(seek(con, as.double(pos), 1L, 1L))
  read_raw <- function(con, n) .Internal(readBin(con, "raw", n, NA_integer_, TRUE, FALSE))
  truncate_file <- function(path) .Internal(file.create(path, FALSE))

  # Bytes flush_out reads in one go before it needs the spool's size: the output of most
  # flushes (a printed value, a line of cat()) fits, and then no stat() is made.
  small_read <- 4096
  # Consumed spool bytes kept between calls before the spool is emptied (after the call).
  spool_keep <- 65536

  # Raw bytes -> UTF-8 string.
  h$as_text <- function(bytes) {
    if (length(bytes) == 0L) return("")
    bytes <- bytes[bytes != as.raw(0L)]
    s <- .Internal(rawToChar(bytes, FALSE))
    if (utf8_ok) {
      .Internal(setEncoding(s, "UTF-8"))
    } else {
      enc2utf8(s)
    }
  }

  # Number of leading bytes of `bytes` that end on a UTF-8 character boundary.
  h$utf8_head_len <- function(bytes) {
    n <- length(bytes)
    if (n == 0L) return(0L)
    v <- as.integer(bytes)
    i <- n
    # walk back over at most 3 continuation bytes to the lead byte
    while (i > 1L && i > n - 3L && v[i] >= 128L && v[i] < 192L) i <- i - 1L
    lead <- v[i]
    need <- if (lead < 128L) 1L else if (lead >= 240L) 4L else if (lead >= 224L) 3L else if (lead >= 192L) 2L else 1L
    if (n - i + 1L >= need) n else i - 1L
  }

  # Number of leading continuation bytes to skip so a tail starts on a character.
  h$utf8_skip_len <- function(bytes) {
    v <- as.integer(bytes[seq_len(min(3L, length(bytes)))])
    k <- 0L
    for (b in v) if (b >= 128L && b < 192L) k <- k + 1L else break
    k
  }

  top_eval <- quote(eval(expr, globalenv()))

  # One-line text of a condition's call; NA for none or for our own eval frame
  # (a top-level stop() or warning() has no call at the console either).
  h$deparse_call <- function(call) {
    if (is.null(call) || identical(call, top_eval)) return(NA_character_)
    s <- tryCatch(deparse(call, width.cutoff = 200L, nlines = 1L), error = function(e) "<call>")
    if (length(s) == 0L) NA_character_ else s[[1L]]
  }

  # ---- per-call output accounting -------------------------------------------

  # One environment of per-call state, built in one step (twelve assignments into an empty
  # environment cost as much as a whole flush_out).
  h$new_call <- function(max_output_bytes) {
    head_left <- max(0, floor(max_output_bytes / 2))
    st <- list(events = vector("list", 16L), n = 0L, head_left = head_left,
               tail_cap = max(0, max_output_bytes - head_left), tail = list(), tail_bytes = 0,
               truncated = FALSE, omitted = 0, traceback = character(), plots = 0L)
    .Internal(list2env(st, .Internal(new.env(TRUE, emptyenv(), 29L))))
  }

  h$push <- function(st, ev) {
    st$n <- st$n + 1L
    if (st$n > length(st$events)) length(st$events) <- 2L * length(st$events)
    st$events[[st$n]] <- ev
  }

  # Keep a rolling tail of at most tail_cap text bytes; non-text events (plots,
  # errors) stay in order and are never dropped.
  h$tail_push <- function(st, ev) {
    st$tail[[length(st$tail) + 1L]] <- ev
    if (!is.null(ev$text) && !identical(ev$type, "error") && !identical(ev$type, "plot")) {
      st$tail_bytes <- st$tail_bytes + nchar(ev$text, type = "bytes")
    }
    i <- 1L
    while (st$tail_bytes > st$tail_cap && i <= length(st$tail)) {
      e <- st$tail[[i]]
      if (identical(e$type, "error") || identical(e$type, "plot")) {
        i <- i + 1L
        next
      }
      nb <- nchar(e$text, type = "bytes")
      excess <- st$tail_bytes - st$tail_cap
      if (nb <= excess) {
        st$tail[[i]] <- NULL
        st$tail_bytes <- st$tail_bytes - nb
        st$omitted <- st$omitted + nb
      } else {
        b <- charToRaw(e$text)
        cut <- excess + h$utf8_skip_len(b[-seq_len(excess)])
        e$text <- h$as_text(b[-seq_len(cut)])
        st$tail[[i]] <- e
        st$tail_bytes <- st$tail_bytes - cut
        st$omitted <- st$omitted + cut
      }
    }
  }

  # Add a text event (stdout, value, message, warning) under the byte budget.
  h$add_text <- function(st, type, text, call = NA_character_) {
    if (length(text) == 0L || !nzchar(text)) return(invisible())
    ev <- list(type = type, text = text, call = call)
    if (st$truncated) return(h$tail_push(st, ev))
    nb <- .Internal(nchar(text, "bytes", FALSE, NA))
    if (nb <= st$head_left) {
      st$head_left <- st$head_left - nb
      return(h$push(st, ev))
    }
    b <- charToRaw(text)
    keep <- h$utf8_head_len(b[seq_len(st$head_left)])
    if (keep > 0L) {
      h$push(st, list(type = type, text = h$as_text(b[seq_len(keep)]), call = call))
    }
    st$head_left <- 0
    st$truncated <- TRUE
    rest <- b[-seq_len(keep)]
    if (length(rest) > st$tail_cap) {
      drop <- length(rest) - st$tail_cap
      drop <- drop + h$utf8_skip_len(rest[-seq_len(drop)])
      st$omitted <- st$omitted + drop
      rest <- rest[-seq_len(drop)]
    }
    ev$text <- h$as_text(rest)
    h$tail_push(st, ev)
  }

  h$add_event <- function(st, ev) {
    if (st$truncated) h$tail_push(st, ev) else h$push(st, ev)
  }

  # Read spooled output written since the last flush into a text event. Reads
  # at most head_left + tail_cap bytes, whatever the spool holds.
  h$flush_out <- function(st, type = "stdout") {
    sp <- state$spool
    .Internal(flush(sp$w))
    if (!st$truncated) {
      # Fast path: everything written since the last flush, when it is shorter than one small
      # read and within the budget, without asking the spool's size.
      want <- min(small_read, st$head_left + st$tail_cap + 1)
      .Internal(seek(sp$r, sp$pos, 1L, 1L))
      b <- .Internal(readBin(sp$r, "raw", want, NA_integer_, TRUE, FALSE))
      if (length(b) < want) {
        if (length(b) == 0L) return(invisible())
        sp$pos <- sp$pos + length(b)
        return(h$add_text(st, type, h$as_text(b)))
      }
    }
    size <- file_size(sp$path)
    n <- size - sp$pos
    if (is.na(n) || n <= 0) return(invisible())
    budget <- st$head_left + st$tail_cap
    if (st$truncated || n > budget) {
      # read head part (if any) then only the last tail_cap bytes
      if (!st$truncated && st$head_left > 0) {
        seek_read(sp$r, sp$pos)
        b <- read_raw(sp$r, st$head_left)
        keep <- h$utf8_head_len(b)
        h$add_text(st, type, h$as_text(b[seq_len(keep)]))
        sp$pos <- sp$pos + keep
        n <- size - sp$pos
      }
      st$truncated <- TRUE
      st$head_left <- 0
      if (n > st$tail_cap) {
        st$omitted <- st$omitted + (n - st$tail_cap)
        sp$pos <- size - st$tail_cap
        n <- st$tail_cap
      }
    }
    seek_read(sp$r, sp$pos)
    b <- read_raw(sp$r, n)
    if (st$truncated) {
      skip <- h$utf8_skip_len(b)
      if (skip > 0L) {
        st$omitted <- st$omitted + skip
        b <- b[-seq_len(skip)]
      }
    }
    sp$pos <- size
    h$add_text(st, type, h$as_text(b))
  }

  # The spool lives at a fixed path per R process (`spool_path`, returned by
  # init) so the server can read what a running evaluation has printed so far
  # over a second connection, for progress notifications.
  h$spool_path <- function() file.path(tempdir(), sprintf("rsession-spool-%d", Sys.getpid()))

  # Child processes (system(), system2(), pipe(), processx) write to file
  # descriptors 1 and 2, not to R's sink. Both are pointed at the spool in
  # append mode, so R's sink and the children append in the order they
  # write: each is closed and the spool opened again, which takes the lowest
  # free descriptor (POSIX open()). Checked through /proc; where that does not
  # hold, the connections are dropped and children write where Rserve's
  # output goes, as before (init reports `child_output`).
  # parallel's namespace (closeStdout/closeStderr below) takes ~6 ms to load, two thirds of
  # init's time; loaded here, at install, a pool pod's Rserve parent pays it once for every
  # session it forks (rsession-harness preload).
  try(loadNamespace("parallel"), silent = TRUE)
  h$capture_child_output <- function(path) {
    if (.Platform$OS.type != "unix" || !file.exists("/proc/self/fd/1")) return(list())
    # What the C library still buffers for the old descriptors (Rserve's
    # start-up lines, inherited through fork) goes out to them first.
    flush(stdout())
    flush(stderr())
    parallel:::closeStdout(FALSE)
    out <- file(path, open = "a")
    parallel:::closeStderr(FALSE)
    err <- file(path, open = "a")
    target <- normalizePath(path)
    fds <- vapply(c("/proc/self/fd/1", "/proc/self/fd/2"), Sys.readlink, "")
    if (all(fds == target)) return(list(out, err))
    close(out)
    close(err)
    list()
  }

  h$open_spool <- function() {
    old <- state$spool
    if (!is.null(old)) {
      for (con in c(list(old$w, old$r), old$stdio)) try(close(con), silent = TRUE)
    }
    path <- h$spool_path()
    file.create(path)
    sp <- new.env(parent = emptyenv())
    sp$path <- path
    # First, while descriptors 1 and 2 are the lowest it can free.
    sp$stdio <- h$capture_child_output(path)
    sp$w <- file(path, open = "a")
    sp$r <- file(path, open = "rb")
    sp$pos <- 0
    state$spool <- sp
  }

  # Every writer appends, so all of them go on at the new end.
  h$empty_spool <- function() {
    sp <- state$spool
    flush_con(sp$w)
    truncate_file(sp$path)
    # The reading side is reopened: its C library buffer would otherwise
    # hand back bytes of the previous output at the same offsets (glibc's
    # fseek() keeps the buffer when the target lies inside it).
    close(sp$r)
    sp$r <- file(sp$path, open = "rb")
    sp$pos <- 0
  }

  # ---- plots ------------------------------------------------------------------

  # grDevices' PNG device when ragg is not there (or does not load): cairo where R has it.
  h$base_png_backend <- function() if (isTRUE(capabilities("cairo"))) "cairo" else "png"

  # options(device=) target: opens a PNG device writing one file per page.
  h$device <- function(...) {
    dir <- state$plot_dir
    # Made again here, not before every evaluation, when user code removed it.
    if (is.null(dir)) dir <- tempdir() else if (!dir.exists(dir)) dir.create(dir, recursive = TRUE)
    state$plot_seq <- state$plot_seq + 1L
    file <- file.path(dir, sprintf("plot-%05d-%%03d.png", state$plot_seq))
    o <- state$plot_opts
    if (identical(state$png_backend, "ragg") && !requireNamespace("ragg", quietly = TRUE)) {
      state$png_backend <- h$base_png_backend()
    }
    if (identical(state$png_backend, "ragg")) {
      ragg::agg_png(file, width = o$width, height = o$height, units = "px", res = o$res)
    } else {
      grDevices::png(file, width = o$width, height = o$height, units = "px", res = o$res,
                     type = if (identical(state$png_backend, "cairo")) "cairo" else getOption("bitmapType"))
    }
    state$devices <- c(state$devices, grDevices::dev.cur())
    invisible()
  }

  # Emit every finished page written so far (a page file appears once the next
  # page starts or the device closes), in page order.
  h$emit_plots <- function(st, max_plots, max_plot_bytes) {
    dir <- state$plot_dir
    if (is.null(dir) || !dir.exists(dir)) return(invisible())
    files <- sort(list.files(dir, pattern = "^plot-.*\\.png$", full.names = TRUE))
    for (f in files) {
      size <- file.size(f)
      if (st$plots >= max_plots) {
        h$add_event(st, list(type = "message", text = sprintf("[rsession: plot omitted, more than %d plots in one call]\n", max_plots), call = NA_character_))
      } else if (!is.na(size) && size > max_plot_bytes) {
        h$add_event(st, list(type = "message", text = sprintf("[rsession: plot omitted, %.0f bytes is over the %.0f byte limit]\n", size, max_plot_bytes), call = NA_character_))
      } else if (!is.na(size) && size > 0) {
        png <- readBin(f, "raw", n = size)
        dims <- h$png_dims(png)
        st$plots <- st$plots + 1L
        h$add_event(st, list(type = "plot", text = sprintf("%dx%d", dims[[1L]], dims[[2L]]), call = NA_character_, png = png))
      }
      unlink(f)
    }
  }

  h$png_dims <- function(png) {
    if (length(png) < 24L) return(c(NA_integer_, NA_integer_))
    be <- function(b) sum(as.numeric(as.integer(b)) * 256^(3:0))
    c(as.integer(be(png[17:20])), as.integer(be(png[21:24])))
  }

  h$close_devices <- function() {
    open <- grDevices::dev.list()
    for (d in state$devices) if (d %in% open) try(grDevices::dev.off(d), silent = TRUE)
    state$devices <- integer()
  }

  # ---- help as text -------------------------------------------------------------

  # options(pager=) target: file.show() hands help pages here; print them to
  # stdout without backspace overstrikes instead of starting a pager program.
  h$pager <- function(files, header = "", title = "", delete.file = FALSE) {
    for (i in seq_along(files)) {
      lines <- readLines(files[[i]], warn = FALSE, encoding = "UTF-8")
      lines <- gsub(".\b", "", lines, useBytes = TRUE)
      if (length(header) >= i && nzchar(header[[i]])) cat(header[[i]], "\n", sep = "")
      cat(lines, sep = "\n")
      if (isTRUE(delete.file)) unlink(files[[i]])
    }
    invisible()
  }

  # ---- entry points -------------------------------------------------------------

  # Memory state of the cgroup this R runs in: list(cgroup, oom_kills,
  # limit_bytes). oom_kills is the cgroup's out-of-memory kill counter (line
  # "oom_kill N" of memory.oom_control under cgroup v1, of memory.events under
  # v2); the server reads it at connect and again over a fresh connection after
  # a connection was lost, and growth means the OOM killer ended that R.
  # limit_bytes is the memory limit (v1 memory.limit_in_bytes, v2 memory.max).
  # Both are doubles, NA when unreadable or unlimited. Inside a container these
  # paths show the container's own cgroup. RSESSION_CGROUP_ROOT (in Rserve's
  # environment) moves the root, for hosts that mount it elsewhere and for tests.
  h$memory_state <- function(root = Sys.getenv("RSESSION_CGROUP_ROOT", "/sys/fs/cgroup")) {
    read <- function(f) tryCatch(suppressWarnings(readLines(f, warn = FALSE)), error = function(e) character())
    counter <- function(lines) {
      hit <- grep("^oom_kill [0-9]+$", lines, value = TRUE)
      if (length(hit) == 0L) NA_real_ else as.numeric(sub("^oom_kill ", "", hit[[1L]]))
    }
    # v2 writes "max" when unlimited; v1 a value near 2^63 (PAGE_COUNTER_MAX).
    limit <- function(lines) {
      v <- if (length(lines) == 0L) NA_real_ else suppressWarnings(as.numeric(lines[[1L]]))
      if (is.na(v) || v >= 2^62) NA_real_ else v
    }
    v1 <- file.path(root, "memory")
    if (file.exists(file.path(v1, "memory.oom_control"))) {
      list(cgroup = "v1",
           oom_kills = counter(read(file.path(v1, "memory.oom_control"))),
           limit_bytes = limit(read(file.path(v1, "memory.limit_in_bytes"))))
    } else if (file.exists(file.path(root, "memory.events"))) {
      list(cgroup = "v2",
           oom_kills = counter(read(file.path(root, "memory.events"))),
           limit_bytes = limit(read(file.path(root, "memory.max"))))
    } else {
      list(cgroup = NA_character_, oom_kills = NA_real_, limit_bytes = NA_real_)
    }
  }

  # The workspace as R sees it (absolute), or NULL before init.
  h$workspace <- function() state$workspace

  h$init <- function(workspace, library = NULL, plot_width = 800L, plot_height = 600L, plot_res = 96L) {
    tempdir(check = TRUE)
    dir.create(workspace, recursive = TRUE, showWarnings = FALSE, mode = "0700")
    workspace <- normalizePath(workspace, mustWork = TRUE)
    setwd(workspace)
    state$workspace <- workspace
    if (!is.null(library)) {
      lib <- file.path(workspace, library)
      dir.create(lib, recursive = TRUE, showWarnings = FALSE)
      # A read-only workspace (the read-only sandbox) has no session library.
      if (dir.exists(lib)) {
        state$library <- normalizePath(lib, mustWork = TRUE)
        .libPaths(c(state$library, .libPaths()))
      }
    }
    state$plot_opts <- list(width = as.integer(plot_width), height = as.integer(plot_height), res = as.integer(plot_res))
    # Whether ragg is installed, not loaded: loading it here cost every new session ~25 ms
    # before its first result; the first plot loads it (h$device).
    state$png_backend <- if (nzchar(system.file(package = "ragg"))) "ragg" else h$base_png_backend()
    state$plot_dir <- tempfile("rsession-plots-")
    dir.create(state$plot_dir)
    h$open_spool()
    options(device = h$device, help_type = "text", pager = h$pager,
            browser = function(url, ...) cat("[rsession: no browser; URL] ", url, "\n", sep = ""))
    h$compile_in_background()
    list(workspace = workspace, pid = Sys.getpid(), r_version = R.version.string,
         png_backend = state$png_backend, library = if (is.null(state$library)) NA_character_ else state$library,
         memory = h$memory_state(), spool = state$spool$path,
         child_output = length(state$spool$stdio) > 0L)
  }

  # Exiting handlers for errors and interrupts, as base R's tryCatch(expr, error =, interrupt =)
  # sets them up (tryCatchOne in src/library/base/R/conditions.R, unchanged since R 3.x), in one
  # frame instead of tryCatch's seven closure calls: each closure call costs an R that waited
  # on its socket several microseconds (docs/benchmarks.md, the MCP round trip). Called as
  # `h$catch(return(value))` from a function, it returns `value` from that function when no
  # error or interrupt is signalled; when one is, `expr` is unwound and catch returns R's
  # list(condition, call, class, ...) (see h$evaluate for the forms the condition takes).
  catch_classes <- c("error", "interrupt")
  catch_marks <- list("error", "interrupt")
  h$catch <- function(expr) {
    .Internal(.addCondHands(catch_classes, catch_marks, globalenv(), environment(), FALSE))
    expr
  }

  # Visible values are printed with base R's print() (a user's own `print` does not replace
  # it), called from an environment whose parent is the global environment so that S3 methods
  # the user defined there are found, as at the console.
  print_env <- new.env(parent = globalenv())
  print_env$print <- base::print
  print_call <- quote(print(x))

  # Evaluate user code in the global environment (see header for the result).
  h$execute <- function(code, max_output_bytes = 1048576, max_plots = 20L, max_plot_bytes = 10485760) {
    if (!is.null(state$bytecode)) h$adopt_bytecode()
    st <- h$new_call(max_output_bytes)
    # Before each evaluation: a spool removed since (a user's unlink() of the temp directory)
    # is opened again, so progress can read it by its path, in R's temp directory made again
    # if that went too (the plot directory is made again when a device opens); one written to
    # since the last evaluation (Rserve prints the error of a failed file or data call to
    # descriptor 2, a background child may print late) is emptied, so this evaluation reads
    # only its own. This one stat() is the only file check of an evaluation: each costs an R
    # that waited on its socket 10 to 20 us (docs/benchmarks.md, the MCP round trip).
    sp <- state$spool
    size <- if (is.null(sp)) NA else .Internal(file.info(sp$path, FALSE))$size
    if (is.na(size)) {
      tempdir(check = TRUE)
      h$open_spool()
      sp <- state$spool
    } else if (size > sp$pos) {
      h$empty_spool()
    }
    sinks <- .Internal(sink.number(TRUE))
    .Internal(sink(sp$w, FALSE, FALSE, FALSE))
    .Internal(sink(sp$w, FALSE, TRUE, FALSE))
    on.exit({
      .Internal(sink(stderr(), FALSE, TRUE, FALSE))
      while (.Internal(sink.number(TRUE)) > sinks) .Internal(sink(-1L, FALSE, FALSE, FALSE))
    })
    status <- h$evaluate(st, code, max_plots, max_plot_bytes)
    # A second interrupt during the wrap-up must not lose the result.
    h$catch({
      # After a normal end the loop has read everything; what a background child writes
      # later is read by the next call.
      if (status != "ok") h$flush_out(st, "stdout")
      .Internal(sink(stderr(), FALSE, TRUE, FALSE))
      while (.Internal(sink.number(TRUE)) > sinks) .Internal(sink(-1L, FALSE, FALSE, FALSE))
      on.exit()
      if (length(state$devices)) {
        h$close_devices()
        h$emit_plots(st, max_plots, max_plot_bytes)
      }
      # Empty the spool once more than `spool_keep` bytes were read from it, so a long
      # output's disk is given back.
      if (state$spool$pos > spool_keep) h$empty_spool()
    })
    h$result(st, status)
  }

  # Parse and evaluate `code` expression by expression, capturing into `st`; returns the
  # status. User code runs with the JIT level the session had before the harness (see the end
  # of this file): R compiles user closures and loops as it would outside RSession, while the
  # harness's own functions stay uncompiled; once they are compiled (h$compile() in a parent,
  # or h$adopt_bytecode() from a background child), the JIT stays at the user's level
  # throughout and there is nothing to switch.
  h$evaluate <- function(st, code, max_plots, max_plot_bytes) {
    exprs <- NULL
    jit <- state$jit_switch
    caught <- h$catch(return({
      # Calling handlers, innermost (consulted before catch's exiting ones), for the rest of
      # this frame: what withCallingHandlers() sets up (conditions.R), once for all expressions.
      .Internal(.addCondHands(c("message", "warning", "error"), list(
        function(m) {
          h$flush_out(st, "stdout")
          h$add_text(st, "message", conditionMessage(m))
          invokeRestart("muffleMessage")
        },
        function(w) {
          h$flush_out(st, "stdout")
          h$add_text(st, "warning", conditionMessage(w), h$deparse_call(conditionCall(w)))
          invokeRestart("muffleWarning")
        },
        function(e) st$traceback <- h$user_calls(sys.calls())
      ), globalenv(), NULL, TRUE))
      # parse() without its argument handling (src/library/base/R/parse.R): text, no srcref.
      exprs <- .Internal(parse(stdin(), NULL, code, "?", "<text>", "UTF-8"))
      for (expr in exprs) {
        if (jit) .Internal(enableJIT(jit))
        res <- .Internal(withVisible(eval(expr, globalenv())))
        if (jit) .Internal(enableJIT(0L))
        h$flush_out(st, "stdout")
        if (res$visible) {
          print_env$x <- res$value
          .Internal(eval(print_call, print_env, NULL))
          print_env$x <- NULL
          h$flush_out(st, "value")
        }
        if (length(state$devices)) h$emit_plots(st, max_plots, max_plot_bytes)
      }
      "ok"
    }))
    # Only reached when an error or interrupt unwound the evaluation.
    if (jit) .Internal(enableJIT(0L))
    print_env$x <- NULL
    cond <- caught[[1L]]
    if (identical(caught[[3L]], "interrupt")) return("interrupted")
    # As tryCatchOne: an error raised in C code leaves its message in R's error buffer (NULL
    # here) or, when R could not allocate a condition, as a string; its call comes second.
    msg <- if (is.null(cond)) .Internal(geterrmessage()) else if (is.character(cond)) cond else conditionMessage(cond)
    call <- if (is.null(cond) || is.character(cond)) caught[[2L]] else conditionCall(cond)
    if (is.null(exprs)) {
      h$push(st, list(type = "error", text = msg, call = NA_character_, traceback = character()))
      return("parse_error")
    }
    h$flush_out(st, "stdout")
    h$add_event(st, list(type = "error", text = msg, call = h$deparse_call(call), traceback = st$traceback))
    "error"
  }

  # Calls between our eval frame and the handler, innermost last, one line each.
  h$user_calls <- function(calls) {
    n <- length(calls)
    # The first eval(expr, globalenv()) frame is h$evaluate's; user code runs inside it.
    is_top <- vapply(calls, identical, NA, top_eval)
    start <- match(TRUE, is_top)
    if (is.na(start)) return(character())
    # frames after ours: eval(expr, globalenv()) (twice), the user's calls,
    # then R's own .handleSimpleError() and this calling handler.
    user <- calls[seq_len(n) > start & seq_len(n) < n & !is_top]
    stop_at <- Position(function(cl) identical(cl[[1L]], quote(.handleSimpleError)), user)
    if (!is.na(stop_at)) user <- user[seq_len(stop_at - 1L)]
    vapply(user, h$deparse_call, character(1L))
  }

  h$result <- function(st, status) {
    events <- st$events[seq_len(st$n)]
    # Output that went past the head budget but fitted the tail lost nothing:
    # not truncated, and no marker between head and tail.
    lost <- st$truncated && st$omitted > 0
    if (st$truncated) {
      if (lost) events[[length(events) + 1L]] <- list(type = "truncated", text = sprintf("[... %.0f bytes of output omitted ...]\n", st$omitted), call = NA_character_, omitted_bytes = st$omitted)
      events <- c(events, st$tail)
    }
    list(status = status, events = events, truncated = lost, omitted_bytes = st$omitted,
         spool_end = if (is.null(state$spool)) 0 else state$spool$pos)
  }

  # ---- workspace files ------------------------------------------------------------

  # Resolve `path` (relative to the workspace) and refuse anything that leaves
  # it, following symlinks. Returns the absolute path or stops.
  h$resolve <- function(path, must_exist = TRUE) {
    ws <- state$workspace
    if (is.null(ws)) stop("rsession: workspace not initialised")
    if (!nzchar(path) || identical(path, ".")) return(ws)
    full <- file.path(ws, path)
    link <- Sys.readlink(full)
    if (file.exists(full)) {
      real <- normalizePath(full, mustWork = TRUE)
    } else {
      # a dangling symlink would be followed by a write, wherever it points
      if (!is.na(link) && nzchar(link)) stop("rsession: path is a dangling symlink: ", path)
      if (must_exist) stop("rsession: no such file: ", path)
      parent <- dirname(full)
      while (!dir.exists(parent) && !identical(parent, dirname(parent))) parent <- dirname(parent)
      real_parent <- normalizePath(parent, mustWork = TRUE)
      inside <- identical(real_parent, ws) || startsWith(real_parent, paste0(ws, "/"))
      if (!inside) stop("rsession: path leaves the workspace: ", path)
      return(full)
    }
    inside <- identical(real, ws) || startsWith(real, paste0(ws, "/"))
    if (!inside) stop("rsession: path leaves the workspace: ", path)
    real
  }

  h$list_files <- function(path = ".", recursive = FALSE) {
    dir <- h$resolve(path)
    if (!dir.exists(dir)) stop("rsession: not a directory: ", path)
    names <- list.files(dir, all.files = TRUE, no.. = TRUE, recursive = recursive, include.dirs = TRUE)
    info <- file.info(file.path(dir, names), extra_cols = FALSE)
    list(name = names, size = as.numeric(info$size), is_dir = info$isdir,
         mtime = as.numeric(info$mtime))
  }

  h$read_file <- function(path, max_bytes = 1048576, offset = 0) {
    f <- h$resolve(path)
    if (dir.exists(f)) stop("rsession: is a directory: ", path)
    size <- file.size(f)
    offset <- min(offset, size)
    n <- min(size - offset, max_bytes)
    con <- file(f, open = "rb")
    on.exit(close(con))
    if (offset > 0) seek(con, offset)
    list(bytes = readBin(con, "raw", n = n), size = size, offset = offset, truncated = offset + n < size)
  }

  h$write_file <- function(path, content, overwrite = TRUE) {
    f <- h$resolve(path, must_exist = FALSE)
    if (dir.exists(f)) stop("rsession: is a directory: ", path)
    if (file.exists(f) && !isTRUE(overwrite)) stop("rsession: file exists: ", path)
    dir.create(dirname(f), recursive = TRUE, showWarnings = FALSE)
    # re-check now that parents exist (a symlinked parent could point out)
    f <- h$resolve(path, must_exist = FALSE)
    if (is.character(content)) content <- charToRaw(enc2utf8(content))
    writeBin(content, f)
    list(path = path, size = file.size(f))
  }

  # Bytes assigned by the server with QAP1 setSEXP for one call; removed at once.
  h$take_upload <- function() {
    x <- get(".rsession_upload", envir = globalenv())
    rm(".rsession_upload", envir = globalenv())
    x
  }

  # Install into the session library; the build log of a failed package is
  # printed (its last lines), so the agent sees why.
  h$install_package <- function(pkgs, repos) {
    lib <- state$library
    if (is.null(lib)) stop("rsession: this session has no private library (its workspace is read-only: --sandbox read-only); install_package needs a writable workspace")
    logs <- tempfile("rsession-install-")
    dir.create(logs)
    on.exit(unlink(logs, recursive = TRUE), add = TRUE)
    utils::install.packages(pkgs, lib = lib, repos = repos, keep_outputs = logs)
    ok <- vapply(pkgs, function(p) nzchar(system.file(package = p, lib.loc = lib)), logical(1L))
    for (p in pkgs[!ok]) {
      f <- file.path(logs, paste0(p, ".out"))
      if (file.exists(f)) cat(utils::tail(readLines(f, warn = FALSE), 40L), sep = "\n")
    }
    if (!all(ok)) stop("rsession: not installed: ", paste(pkgs[!ok], collapse = ", "), call. = FALSE)
    vers <- vapply(pkgs, function(p) as.character(utils::packageVersion(p, lib.loc = lib)), character(1L))
    cat(sprintf("installed %s %s into the session library %s\n", pkgs, vers, lib), sep = "")
    invisible(vers)
  }

  # R's JIT (level 3 by default) compiles a closure on its first calls. For the harness's own
  # functions, which run once per call, that cost the first two evaluations of every session
  # about 150 ms (plain R: 45 and 143 ms for the first two `1 + 1`, 0.8 ms with the JIT off). So
  # the harness runs with the JIT off and user code with the session's level (h$evaluate); the
  # level is kept in an option so that a second install in the same process keeps the user's.
  old_jit <- .Internal(enableJIT(0L))
  state$user_jit <- getOption("rsession.user_jit", old_jit)
  options(rsession.user_jit = state$user_jit)
  # The level h$evaluate switches to around each user expression (0: no switch).
  state$jit_switch <- state$user_jit

  # Every closure of the harness, as list(env, name) pairs in a fixed order: this file's own
  # helpers (its local() frame), the environments harness_data.R, harness_db.R and
  # harness_checkpoint.R attach, and the environments those hold. Call after all four files are
  # sourced.
  h$functions <- function() {
    out <- list()
    add <- function(env) {
      for (name in ls(env, all.names = TRUE)) {
        fun <- get(name, envir = env)
        if (is.function(fun) && !is.primitive(fun)) out[[length(out) + 1L]] <<- list(env = env, name = name)
      }
    }
    add(environment(sys.function()))
    for (pos in c("rsession:harness", "rsession:data", "rsession:db", "rsession:checkpoint")) {
      if (!pos %in% search()) next
      attached <- as.environment(pos)
      add(attached)
      for (obj in ls(attached, all.names = TRUE)) {
        env <- get(obj, envir = attached)
        if (is.environment(env)) add(env)
      }
    }
    out
  }

  # This process's parent (field 4 of /proc/self/stat, after the parenthesised command name);
  # NA without /proc.
  parent_pid <- function() {
    stat <- tryCatch(readLines("/proc/self/stat", warn = FALSE), error = function(e) "")
    as.integer(strsplit(sub(".*\\) ", "", stat), " ", fixed = TRUE)[[1L]][2L])
  }

  is_bytecode <- function(fun) typeof(.Internal(bodyCode(fun))) == "bytecode"

  # Put `fun` in place of the harness function `name` in `env`, whose bindings are locked.
  replace_function <- function(env, name, fun) {
    locked <- bindingIsLocked(name, env)
    if (locked) unlockBinding(name, env)
    assign(name, fun, envir = env)
    if (locked) lockBinding(name, env)
  }

  # From now on the harness is bytecode: R keeps the user's JIT level for good (the JIT leaves
  # compiled closures alone, so h$evaluate no longer switches it around each expression).
  compiled <- function() {
    state$compiled <- TRUE
    state$bytecode <- NULL
    state$jit_switch <- 0L
    .Internal(enableJIT(state$user_jit))
  }

  # Byte-compile every harness function in place (a cold evaluation of `1+1` about 70 us faster,
  # docs/benchmarks.md, the MCP round trip). Compiling takes about 0.6 s, so it runs where
  # nobody waits for it: an Rserve parent that preloads the harness does it once, before it
  # listens (rsession_harness::preload_r), and every R forked for a connection inherits the
  # compiled harness. Returns the number compiled.
  h$compile <- function() {
    n <- 0L
    for (f in h$functions()) {
      fun <- get(f$name, envir = f$env)
      if (is_bytecode(fun)) next
      replace_function(f$env, f$name, compiler::cmpfun(fun))
      n <- n + 1L
    }
    compiled()
    n
  }

  # A harness installed into a running R (an Rserve nobody preloaded it in, or one that sourced
  # it without compiling) compiles in a child forked from the session's R, on another core while
  # the session serves calls, and the session adopts the bytecode on the call after the child
  # is done (h$adopt_bytecode, about 20 ms once). The child is detached (parallel's
  # estranged fork: the user's mccollect() never sees it, R reaps it), leaves the user's random
  # number stream alone, prints nothing, runs at the lowest priority and offers itself first to
  # the OOM killer. It writes into R's temp directory, which only processes of the session's
  # own user can write to. `options(rsession.compile = FALSE)` (say, in an image's
  # Rprofile.site) turns this off.
  h$compile_in_background <- function() {
    if (isTRUE(state$compiled) || !isTRUE(getOption("rsession.compile", TRUE))) return(invisible(FALSE))
    path <- tempfile("rsession-bytecode-", fileext = ".rds")
    session <- Sys.getpid()
    job <- tryCatch(parallel::mcparallel(tryCatch({
      try(cat("1000\n", file = "/proc/self/oom_score_adj"), silent = TRUE)
      tools::psnice(value = 19L)
      fns <- h$functions()
      codes <- lapply(fns, function(f) {
        # A session that ended (closed, or its Rserve stopped) orphans the child: stop there.
        parent <- parent_pid()
        if (!is.na(parent) && parent != session) stop("the session ended")
        fun <- get(f$name, envir = f$env)
        if (!is_bytecode(fun)) {
          code <- .Internal(bodyCode(compiler::cmpfun(fun)))
          if (typeof(code) == "bytecode") code
        }
      })
      names(codes) <- vapply(fns, function(f) f$name, "")
      saveRDS(codes, paste0(path, ".part"), compress = FALSE)
      file.rename(paste0(path, ".part"), path)
    }, error = function(e) NULL, interrupt = function(e) NULL),
    mc.set.seed = FALSE, silent = TRUE, detached = TRUE), error = function(e) NULL)
    if (is.null(job)) return(invisible(FALSE))
    state$bytecode <- list(path = path, pid = job$pid, checks = 0L)
    invisible(TRUE)
  }

  # Called before each evaluation while a background compile is pending: one stat() until the
  # child's file is there, then the bytecode replaces the harness's closures (same formals and
  # environment, as compiler::cmpfun builds them). A child that died without a result is
  # noticed every 256 calls and given up on, leaving the harness uncompiled.
  h$adopt_bytecode <- function() {
    bc <- state$bytecode
    if (!.Internal(file.exists(bc$path))) {
      bc$checks <- bc$checks + 1L
      state$bytecode <- bc
      if (bc$checks %% 256L == 0L && !tools::pskill(bc$pid, 0L) && !file.exists(bc$path)) state$bytecode <- NULL
      return(invisible(FALSE))
    }
    state$bytecode <- NULL
    codes <- tryCatch(readRDS(bc$path), error = function(e) NULL)
    unlink(bc$path)
    fns <- h$functions()
    if (!is.list(codes) || !identical(names(codes), vapply(fns, function(f) f$name, ""))) return(invisible(FALSE))
    for (i in seq_along(fns)) {
      code <- codes[[i]]
      f <- fns[[i]]
      fun <- get(f$name, envir = f$env)
      if (typeof(code) != "bytecode" || is_bytecode(fun)) next
      new <- .Internal(bcClose(formals(fun), code, environment(fun)))
      attributes(new) <- attributes(fun)
      replace_function(f$env, f$name, new)
    }
    compiled()
    invisible(TRUE)
  }

  lockEnvironment(h, bindings = TRUE)
  if ("rsession:harness" %in% search()) detach("rsession:harness", character.only = TRUE)
  e <- attach(NULL, name = "rsession:harness", warn.conflicts = FALSE)
  assign(".rsession", h, envir = e)
  # quit() in a forked Rserve child would delete the R temp directory that all
  # children share with the Rserve parent; end this process without that
  # clean-up instead (the server sees the session lost, as with quit()).
  end_session <- function(save = "default", status = 0, runLast = TRUE) {
    tools::pskill(Sys.getpid(), tools::SIGKILL)
  }
  assign("quit", end_session, envir = e)
  assign("q", end_session, envir = e)
  lockEnvironment(e, bindings = TRUE)
  invisible(TRUE)
})
