
# RSession checkpoint and restore: R state that outlives its process.
#
# Sent after harness.R and harness_data.R (same voidEval). Defines
# `.rsession_checkpoint` in a locked environment attached as
# "rsession:checkpoint". Entry points (called by rsession-mcp):
#   .rsession_checkpoint$save(dir, max_bytes, max_object_bytes, budget_secs, compress)
#   .rsession_checkpoint$restore(dir)
#   .rsession_checkpoint$info(dir)
#
# A checkpoint is a directory: one .rds file per global-environment object
# (gzip level `compress`, 1 by default: fast) and `manifest.rds` with what
# was saved and skipped, the attached packages in search order, the
# datasets load_data registered, selected options, the working directory
# (relative to the workspace) and the RNG kind (`.Random.seed` is an object
# like any other). It is written into a fresh directory next to `dir` and
# renamed over it only when complete, so a failed or interrupted checkpoint
# leaves the previous one intact.
#
# Objects that cannot outlive the process are found while writing: saveRDS's
# refhook sees every external pointer in an object's graph (database
# connections, arrow tables, open C handles), and connections are R
# integers with class "connection". They are skipped and named.
local({
  cp <- new.env(parent = globalenv())

  cp$options_kept <- c("digits", "scipen", "width", "OutDec", "stringsAsFactors",
                       "dplyr.summarise.inform", "tibble.print_max", "tibble.print_min",
                       "pillar.sigfig", "datatable.print.nrows", "na.action", "contrasts")

  # Why `x` (bound to `name`) cannot be saved, or NULL. A session with a
  # `database` spec has libpq's variables (PGHOST, ...) set, so the code that
  # opens its connection again is known and given.
  cp$unsaveable_class <- function(x, name) {
    if (inherits(x, "DBIConnection")) {
      if (nzchar(Sys.getenv("PGHOST")) && (inherits(x, "PqConnection") || inherits(x, "PostgreSQLConnection"))) {
        code <- if (inherits(x, "PqConnection")) "DBI::dbConnect(RPostgres::Postgres())"
                else paste0("DBI::dbConnect(RPostgreSQL::PostgreSQL(), host = Sys.getenv('PGHOST'), port = Sys.getenv('PGPORT', '5432'), dbname = Sys.getenv('PGDATABASE'), user = Sys.getenv('PGUSER')",
                            # In a cluster the pod's credential proxy holds the password and R has none.
                            if (nzchar(Sys.getenv("PGPASSWORD"))) ", password = Sys.getenv('PGPASSWORD'))" else ")")
        return(sprintf("a connection to the session's database: open it again with %s <- %s", name, code))
      }
      return("a database connection: open it again with DBI::dbConnect() after the restore")
    }
    if (inherits(x, "connection")) return("an open connection (file, URL or socket): open it again after the restore")
    NULL
  }

  # saveRDS `x` to `file` (gzip level `compress`), counting the external
  # pointers in its graph: list(ok = TRUE or the error message, pointers).
  cp$write <- function(x, file, compress) {
    pointers <- 0L
    hook <- function(ref) {
      if (typeof(ref) == "externalptr") pointers <<- pointers + 1L
      NULL
    }
    con <- gzfile(file, "wb", compression = compress)
    ok <- tryCatch({ saveRDS(x, con, refhook = hook); TRUE }, error = function(e) conditionMessage(e),
                   finally = close(con))
    list(ok = ok, pointers = pointers)
  }

  cp$save <- function(dir, max_bytes = 2^30, max_object_bytes = 2^28, budget_secs = 60, compress = 1L) {
    started <- proc.time()[["elapsed"]]
    parent <- dirname(dir)
    dir.create(parent, recursive = TRUE, showWarnings = FALSE)
    tmp <- file.path(parent, sprintf(".%s.tmp-%d", basename(dir), Sys.getpid()))
    unlink(tmp, recursive = TRUE)
    dir.create(tmp)
    on.exit(unlink(tmp, recursive = TRUE), add = TRUE)
    # load_data's helper functions are made again when their dataset is
    # registered again on restore; they are not state of their own.
    helpers <- unlist(lapply(names(.rsession_data$registry()), .rsession_data$helper_names))
    objs <- setdiff(ls(globalenv(), all.names = TRUE, sorted = TRUE), helpers)
    saved <- list()
    skipped <- list()
    total <- 0
    skip <- function(name, reason, bytes = NA_real_) {
      skipped[[length(skipped) + 1L]] <<- list(name = name, reason = reason, bytes = bytes)
    }
    for (i in seq_along(objs)) {
      name <- objs[[i]]
      if (proc.time()[["elapsed"]] - started > budget_secs) {
        skip(name, sprintf("the checkpoint's time budget (%g s) ran out", budget_secs))
        next
      }
      x <- tryCatch(get(name, envir = globalenv(), inherits = FALSE), error = function(e) e)
      if (inherits(x, "error")) { skip(name, paste("could not be read:", conditionMessage(x))); next }
      why <- cp$unsaveable_class(x, name)
      if (!is.null(why)) { skip(name, why); next }
      approx <- as.double(utils::object.size(x))
      if (approx > max_object_bytes) {
        skip(name, sprintf("larger than the per-object cap (%.0f MB in memory, cap %.0f MB)", approx / 2^20, max_object_bytes / 2^20), approx)
        next
      }
      file <- file.path(tmp, sprintf("%06d.rds", i))
      w <- cp$write(x, file, compress)
      note <- NULL
      if (isTRUE(w$ok) && w$pointers > 0L && is.data.frame(x)) {
        # readr/vroom keep parsing problems as an external pointer in an
        # attribute; the columns are plain data, so save them without it.
        extra <- setdiff(names(attributes(x)), c("names", "row.names", "class"))
        for (a in extra) attr(x, a) <- NULL
        w <- cp$write(x, file, compress)
        if (w$pointers == 0L) note <- paste("saved without attribute(s)", paste(extra, collapse = ", "))
      }
      ok <- w$ok
      pointers <- w$pointers
      bytes <- file.size(file)
      if (!isTRUE(ok) || pointers > 0L) {
        unlink(file)
        skip(name, if (!isTRUE(ok)) paste("could not be saved:", ok)
                   else "holds an external pointer (a C-level object such as a database connection, an arrow table or a model from a compiled library) that does not survive the process: create it again after the restore", approx)
        next
      }
      if (total + bytes > max_bytes) {
        unlink(file)
        skip(name, sprintf("the checkpoint's size cap (%.0f MB) was reached", max_bytes / 2^20), bytes)
        next
      }
      total <- total + bytes
      saved[[length(saved) + 1L]] <- list(name = name, file = basename(file), bytes = bytes, note = if (is.null(note)) NA_character_ else note)
    }
    ws <- .rsession$workspace()
    wd <- getwd()
    attached <- sub("^package:", "", grep("^package:", search(), value = TRUE))
    manifest <- list(
      version = 1L,
      created_at = format(Sys.time(), "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"),
      r_version = R.version.string,
      objects = saved,
      skipped = skipped,
      packages = attached,
      datasets = unname(.rsession_data$registry()),
      options = options()[intersect(cp$options_kept, names(options()))],
      rng_kind = RNGkind(),
      # getwd() is NULL when the working directory was removed under R.
      wd = if (is.character(wd) && is.character(ws) && startsWith(wd, ws))
        substring(wd, nchar(ws) + 2L) else "")
    saveRDS(manifest, file.path(tmp, "manifest.rds"))
    # Swap in the new checkpoint only now that it is complete.
    old <- file.path(parent, sprintf(".%s.old-%d", basename(dir), Sys.getpid()))
    if (dir.exists(dir)) file.rename(dir, old)
    if (!file.rename(tmp, dir)) {
      if (dir.exists(old)) file.rename(old, dir)
      stop("rsession: could not move the checkpoint into place at ", dir)
    }
    unlink(old, recursive = TRUE)
    list(created_at = manifest$created_at,
         bytes = total,
         seconds = proc.time()[["elapsed"]] - started,
         saved = I(vapply(saved, `[[`, "", "name")),
         skipped = skipped,
         packages = I(attached),
         datasets = I(as.character(names(.rsession_data$registry()))))
  }

  cp$read_manifest <- function(dir) {
    f <- file.path(dir, "manifest.rds")
    if (!file.exists(f)) stop("rsession: no checkpoint at ", dir)
    readRDS(f)
  }

  cp$age_secs <- function(m) {
    as.double(difftime(Sys.time(), as.POSIXct(m$created_at, format = "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"), units = "secs"))
  }

  cp$info <- function(dir) {
    m <- cp$read_manifest(dir)
    list(created_at = m$created_at, age_secs = cp$age_secs(m),
         objects = I(vapply(m$objects, `[[`, "", "name")),
         bytes = sum(vapply(m$objects, function(o) as.double(o$bytes), 0)))
  }

  cp$restore <- function(dir) {
    started <- proc.time()[["elapsed"]]
    m <- cp$read_manifest(dir)
    failed <- list()
    fail <- function(name, what, msg) failed[[length(failed) + 1L]] <<- list(name = name, what = what, reason = msg)
    # Packages first, so objects of their classes load with their methods;
    # attached last-first so the search order comes back as it was.
    have <- sub("^package:", "", grep("^package:", search(), value = TRUE))
    for (pkg in rev(setdiff(m$packages, have))) {
      ok <- tryCatch({ suppressPackageStartupMessages(library(pkg, character.only = TRUE)); TRUE },
                     error = function(e) conditionMessage(e))
      if (!isTRUE(ok)) fail(pkg, "package", ok)
    }
    do.call(RNGkind, as.list(m$rng_kind))
    restored <- character()
    for (o in m$objects) {
      x <- tryCatch(readRDS(file.path(dir, o$file)), error = function(e) e)
      if (inherits(x, "error")) { fail(o$name, "object", conditionMessage(x)); next }
      assign(o$name, x, envir = globalenv())
      restored <- c(restored, o$name)
    }
    datasets <- character()
    for (entry in m$datasets) {
      ok <- tryCatch(.rsession_data$reregister(entry), error = function(e) conditionMessage(e))
      if (isTRUE(ok)) datasets <- c(datasets, entry$name) else fail(entry$name, "dataset", ok)
    }
    if (length(m$options)) options(m$options)
    if (nzchar(m$wd) && dir.exists(file.path(.rsession$workspace(), m$wd))) setwd(file.path(.rsession$workspace(), m$wd))
    list(created_at = m$created_at,
         age_secs = cp$age_secs(m),
         seconds = proc.time()[["elapsed"]] - started,
         restored = I(restored),
         packages = I(m$packages),
         datasets = I(datasets),
         skipped = m$skipped,
         failed = failed)
  }

  lockEnvironment(cp, bindings = TRUE)
  if ("rsession:checkpoint" %in% search()) detach("rsession:checkpoint", character.only = TRUE)
  e <- attach(NULL, name = "rsession:checkpoint", warn.conflicts = FALSE)
  assign(".rsession_checkpoint", cp, envir = e)
  lockEnvironment(e, bindings = TRUE)
  invisible(TRUE)
})
