
# RSession data tools: load_data, query_data, describe_data, help as text.
#
# Sent right after harness.R (same voidEval), so it can use `.rsession`
# (workspace path checks). Defines `.rsession_data` in a locked environment
# attached as "rsession:data". Every entry point returns a plain list that
# rsession-mcp turns into JSON (src/sexp_json.rs): a length-1 vector is a
# scalar, a vector wrapped in I() is always an array, a named list is an
# object, NA is null. Failures the caller can fix stop with "rsession: ...".
#
# Entry points (called by rsession-mcp, never by users):
#   .rsession_data$load(path, name, backend, options)
#   .rsession_data$query(sql, params, max_rows)
#   .rsession_data$describe(name, top_n)
#   .rsession_data$help_text(topic, package)
local({
  d <- new.env(parent = globalenv())
  # name -> list(name, path, format, backend, note); the data itself lives in
  # the global environment under `name`, where user code can change it.
  reg <- new.env(parent = emptyenv())
  # the SQL engine: con, engine, and per table the object last written
  sql <- new.env(parent = emptyenv())
  sql$written <- new.env(parent = emptyenv())

  d$fail <- function(...) stop(paste0("rsession: ", ...), call. = FALSE)
  d$has <- function(pkg) requireNamespace(pkg, quietly = TRUE)
  d$need <- function(pkg, what) {
    if (!d$has(pkg)) d$fail(what, " needs the R package '", pkg, "', which is not installed in this session's image; install_package can add it, or choose another backend")
  }

  mb <- 1024^2
  d$auto_limits <- c(tibble = 100 * mb, arrow = 1024 * mb)

  # ---- formats and backends ---------------------------------------------------

  d$detect_format <- function(full) {
    if (dir.exists(full)) return("arrow_dataset")
    base <- tolower(basename(full))
    base <- sub("\\.(gz|bz2|xz|zst)$", "", base)
    ext <- tools::file_ext(base)
    switch(ext,
      csv = "csv", tsv = "tsv", tab = "tsv", txt = "delim",
      parquet = "parquet", pq = "parquet",
      feather = "arrow_ipc", arrow = "arrow_ipc", ipc = "arrow_ipc",
      json = "json", ndjson = "ndjson", jsonl = "ndjson",
      xlsx = "excel", xls = "excel", xlsm = "excel",
      sqlite = "sqlite", sqlite3 = "sqlite", db = "sqlite",
      duckdb = "duckdb",
      d$fail("cannot tell the format of '", basename(full), "' from its extension; pass options.format (csv, tsv, delim, parquet, arrow_ipc, arrow_dataset, json, ndjson, excel, sqlite, duckdb)"))
  }

  d$size_of <- function(full) {
    if (dir.exists(full)) {
      files <- list.files(full, recursive = TRUE, full.names = TRUE)
      sum(file.size(files), na.rm = TRUE)
    } else file.size(full)
  }

  # Which backends each format can use; the first is the default.
  d$format_backends <- list(
    csv = c("tibble", "arrow", "duckdb"), tsv = c("tibble", "arrow", "duckdb"),
    delim = c("tibble", "arrow", "duckdb"),
    parquet = c("arrow", "duckdb"), arrow_ipc = "arrow", arrow_dataset = c("arrow", "duckdb"),
    json = "tibble", ndjson = c("tibble", "duckdb"), excel = "tibble",
    sqlite = "tibble", duckdb = "duckdb")

  d$backend_pkg <- c(tibble = "readr", arrow = "arrow", duckdb = "duckdb")

  # Resolve `backend` to one the image can run; returns list(backend, notes).
  d$choose_backend <- function(backend, format, size) {
    allowed <- d$format_backends[[format]]
    notes <- character()
    if (identical(backend, "auto")) {
      want <- if (is.na(size) || size < d$auto_limits[["tibble"]]) "tibble"
              else if (size <= d$auto_limits[["arrow"]]) "arrow" else "duckdb"
      if (!want %in% allowed) want <- allowed[[1L]]
      # fall back: arrow -> duckdb -> tibble, duckdb -> arrow -> tibble
      order <- unique(c(want, if (want == "arrow") c("duckdb", "tibble") else c("arrow", "tibble")))
      order <- order[order %in% allowed]
      for (b in order) {
        if (b == "tibble" || d$has(d$backend_pkg[[b]])) {
          if (b != want) {
            notes <- c(notes, sprintf(
              "auto chose '%s' for a %.1f MB %s file, but the R package '%s' is not installed in this image; loaded with '%s' instead%s.",
              want, size / mb, format, d$backend_pkg[[want]], b,
              if (b == "tibble") " (the whole table is in R memory)" else ""))
          }
          return(list(backend = b, notes = notes))
        }
      }
      d$fail("no backend available for ", format, " files: needs one of the R packages ",
             paste(sprintf("'%s'", d$backend_pkg[allowed]), collapse = ", "))
    }
    if (!backend %in% allowed) {
      d$fail("backend '", backend, "' cannot load ", format, " files; use one of: ",
             paste(c(allowed, "auto"), collapse = ", "))
    }
    if (backend != "tibble" || format %in% c("csv", "tsv", "delim")) {
      d$need(if (backend == "tibble") "readr" else d$backend_pkg[[backend]],
             sprintf("backend '%s'", backend))
    }
    list(backend = backend, notes = notes)
  }

  d$opt <- function(options, key, default = NULL) {
    v <- options[[key]]
    if (is.null(v)) default else v
  }

  d$read <- function(format, full, backend, options) {
    if (backend == "arrow") return(d$read_arrow(format, full, options))
    if (backend == "duckdb") return(d$read_duckdb(format, full, options))
    na <- d$opt(options, "na", c("", "NA"))
    skip <- d$opt(options, "skip", 0)
    n_max <- d$opt(options, "n_max", Inf)
    switch(format,
      csv = , tsv = , delim = {
        delim <- d$opt(options, "delim", switch(format, csv = ",", tsv = "\t", NULL))
        if (is.null(delim)) d$fail("options.delim is needed for .txt files (e.g. \"|\")")
        x <- readr::read_delim(full, delim = delim, na = na, skip = skip, n_max = n_max,
                               col_types = d$opt(options, "col_types", readr::cols()),
                               show_col_types = FALSE, progress = FALSE, lazy = FALSE)
        for (f in d$opt(options, "factors", character())) {
          if (!f %in% names(x)) d$fail("options.factors names '", f, "', which is not a column")
          x[[f]] <- factor(x[[f]])
        }
        x
      },
      json = {
        d$need("jsonlite", "reading JSON")
        x <- jsonlite::fromJSON(full, simplifyVector = TRUE, flatten = isTRUE(d$opt(options, "flatten", TRUE)))
        if (!is.data.frame(x)) {
          field <- d$opt(options, "field")
          if (!is.null(field)) x <- x[[field]]
          if (!is.data.frame(x)) d$fail("the JSON is not an array of records; name the field holding one with options.field")
        }
        d$as_tibble(x)
      },
      ndjson = {
        d$need("jsonlite", "reading NDJSON")
        con <- file(full)
        on.exit(close(con))
        d$as_tibble(jsonlite::stream_in(con, verbose = FALSE, flatten = TRUE))
      },
      excel = {
        d$need("readxl", "reading Excel")
        readxl::read_excel(full, sheet = d$opt(options, "sheet", 1), range = d$opt(options, "range"),
                           na = na, skip = skip, n_max = n_max)
      },
      sqlite = {
        d$need("RSQLite", "reading SQLite databases")
        con <- DBI::dbConnect(RSQLite::SQLite(), full, flags = RSQLite::SQLITE_RO)
        on.exit(DBI::dbDisconnect(con))
        q <- d$opt(options, "query")
        if (!is.null(q)) return(d$as_tibble(DBI::dbGetQuery(con, q)))
        tables <- DBI::dbListTables(con)
        table <- d$opt(options, "table")
        if (is.null(table)) {
          if (length(tables) != 1L) d$fail("the database has ", length(tables), " tables (", paste(tables, collapse = ", "), "); name one with options.table or give options.query")
          table <- tables[[1L]]
        }
        if (!table %in% tables) d$fail("no table '", table, "' in the database; it has: ", paste(tables, collapse = ", "))
        d$as_tibble(DBI::dbReadTable(con, table))
      },
      d$fail("format ", format, " needs the arrow or duckdb backend"))
  }

  d$as_tibble <- function(x) if (d$has("tibble")) tibble::as_tibble(x) else as.data.frame(x)

  # Arrow: a lazy Dataset (queried through dplyr/arrow); only with the package.
  d$read_arrow <- function(format, full, options) {
    switch(format,
      parquet = , arrow_dataset = arrow::open_dataset(full, format = d$opt(options, "arrow_format", "parquet")),
      arrow_ipc = arrow::open_dataset(full, format = "arrow"),
      csv = arrow::open_dataset(full, format = "csv"),
      tsv = arrow::open_dataset(full, format = "tsv"),
      delim = arrow::open_dataset(full, format = "text", delimiter = d$opt(options, "delim", ",")))
  }

  # DuckDB: a view over the file in the session's DuckDB, returned as a lazy dbplyr table.
  d$read_duckdb <- function(format, full, options) {
    con <- d$sql_con()
    if (sql$engine != "duckdb") d$fail("backend 'duckdb' needs the R package 'duckdb'")
    lit <- DBI::dbQuoteString(con, full)
    src <- switch(format,
      csv = , tsv = , delim = sprintf("read_csv_auto(%s)", lit),
      parquet = , arrow_dataset = sprintf("read_parquet(%s)", if (dir.exists(full)) DBI::dbQuoteString(con, file.path(full, "**", "*.parquet")) else lit),
      ndjson = sprintf("read_json_auto(%s)", lit),
      duckdb = d$fail("attach .duckdb files with query_data (ATTACH) instead"))
    structure(list(source = src), class = "rsession_duckdb_view")
  }

  # ---- describing a table -------------------------------------------------------

  d$type_of <- function(v) {
    if (is.factor(v)) return("factor")
    if (inherits(v, "Date")) return("date")
    if (inherits(v, "POSIXt")) return("datetime")
    if (inherits(v, "difftime")) return("difftime")
    if (is.logical(v)) return("logical")
    if (is.integer(v)) return("integer")
    if (is.numeric(v)) return("double")
    if (is.character(v)) return("character")
    if (is.list(v)) return("list")
    class(v)[[1L]]
  }

  # Values as JSON-friendly vectors: dates and times as ISO 8601 text, factors as labels.
  d$plain <- function(v) {
    if (inherits(v, "Date")) return(format(v, "%Y-%m-%d"))
    if (inherits(v, "POSIXt")) return(format(v, "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"))
    if (is.factor(v)) return(as.character(v))
    if (is.list(v)) return(vapply(v, function(e) paste(format(e), collapse = ", "), ""))
    if (is.numeric(v) || is.logical(v) || is.character(v)) return(as.vector(v))
    as.character(v)
  }

  d$rows_of <- function(df) {
    df <- as.data.frame(df, stringsAsFactors = FALSE)
    list(columns = I(names(df)), data = lapply(unname(as.list(df)), function(v) I(d$plain(v))))
  }

  d$text_table <- function(df) {
    old <- options(width = 200L, tibble.width = Inf)
    on.exit(options(old))
    paste(utils::capture.output(print(as.data.frame(df), row.names = FALSE)), collapse = "\n")
  }

  d$spark <- function(v, bins = 8L) {
    v <- v[is.finite(v)]
    if (length(v) < 2L || min(v) == max(v)) return(NA_character_)
    counts <- graphics::hist(v, breaks = seq(min(v), max(v), length.out = bins + 1L), plot = FALSE)$counts
    bars <- c("\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588")
    paste(bars[1L + floor((length(bars) - 1L) * counts / max(counts))], collapse = "")
  }

  d$fmt_num <- function(x) if (is.na(x)) "NA" else formatC(x, digits = 4L, format = "g", flag = "")

  d$profile_column <- function(name, v, n, top_n) {
    miss <- sum(is.na(v))
    col <- list(name = name, type = d$type_of(v), missing = miss,
                complete_rate = if (n > 0) 1 - miss / n else NA_real_,
                n_unique = length(unique(v[!is.na(v)])))
    ok <- v[!is.na(v)]
    if (is.numeric(v) && !inherits(v, c("Date", "POSIXt", "difftime"))) {
      q <- if (length(ok)) stats::quantile(ok, c(0, .25, .5, .75, 1), names = FALSE, type = 7) else rep(NA_real_, 5)
      col$numeric <- list(mean = if (length(ok)) mean(ok) else NA_real_,
                          sd = if (length(ok) > 1L) stats::sd(ok) else NA_real_,
                          p0 = q[[1]], p25 = q[[2]], p50 = q[[3]], p75 = q[[4]], p100 = q[[5]],
                          hist = d$spark(as.double(ok)))
    } else if (inherits(v, c("Date", "POSIXt"))) {
      col$time <- if (length(ok)) list(min = d$plain(min(ok)), median = d$plain(sort(ok)[ceiling(length(ok) / 2)]), max = d$plain(max(ok)))
                  else list(min = NA_character_, median = NA_character_, max = NA_character_)
    } else if (is.character(v) || is.factor(v) || is.logical(v)) {
      s <- as.character(ok)
      tab <- sort(table(s, useNA = "no"), decreasing = TRUE)
      top <- utils::head(tab, top_n)
      col$categorical <- list(top_values = I(names(top)), top_counts = I(as.double(top)),
                              empty = sum(!nzchar(s)),
                              min_length = if (length(s)) min(nchar(s)) else NA_integer_,
                              max_length = if (length(s)) max(nchar(s)) else NA_integer_)
      if (is.factor(v)) col$categorical$levels <- length(levels(v))
    }
    col
  }

  d$describe_text <- function(name, n, cols) {
    out <- c(sprintf("Data summary: %s", name),
             sprintf("  rows: %.0f   columns: %d", n, length(cols)),
             sprintf("  column types: %s", paste(sprintf("%s %d", names(table(vapply(cols, `[[`, "", "type"))), as.integer(table(vapply(cols, `[[`, "", "type")))), collapse = ", ")))
    pad <- function(x, w) formatC(as.character(x), width = -w)
    num <- Filter(function(c) !is.null(c$numeric), cols)
    if (length(num)) {
      out <- c(out, "", "-- numeric", paste(pad("column", 18), pad("missing", 8), pad("mean", 10), pad("sd", 10), pad("p0", 10), pad("p25", 10), pad("p50", 10), pad("p75", 10), pad("p100", 10), "hist"))
      for (c in num) {
        s <- c$numeric
        out <- c(out, paste(pad(c$name, 18), pad(c$missing, 8), pad(d$fmt_num(s$mean), 10), pad(d$fmt_num(s$sd), 10), pad(d$fmt_num(s$p0), 10), pad(d$fmt_num(s$p25), 10), pad(d$fmt_num(s$p50), 10), pad(d$fmt_num(s$p75), 10), pad(d$fmt_num(s$p100), 10), if (is.na(s$hist)) "" else s$hist))
      }
    }
    cat_cols <- Filter(function(c) !is.null(c$categorical), cols)
    if (length(cat_cols)) {
      out <- c(out, "", "-- character / factor / logical", paste(pad("column", 18), pad("type", 10), pad("missing", 8), pad("unique", 8), "top values"))
      for (c in cat_cols) {
        s <- c$categorical
        top <- if (length(s$top_values)) paste(sprintf("%s (%.0f)", s$top_values, s$top_counts), collapse = ", ") else ""
        out <- c(out, paste(pad(c$name, 18), pad(c$type, 10), pad(c$missing, 8), pad(c$n_unique, 8), top))
      }
    }
    tcols <- Filter(function(c) !is.null(c$time), cols)
    if (length(tcols)) {
      out <- c(out, "", "-- date / datetime", paste(pad("column", 18), pad("missing", 8), pad("min", 21), pad("median", 21), "max"))
      for (c in tcols) out <- c(out, paste(pad(c$name, 18), pad(c$missing, 8), pad(c$time$min, 21), pad(c$time$median, 21), c$time$max))
    }
    other <- Filter(function(c) is.null(c$numeric) && is.null(c$categorical) && is.null(c$time), cols)
    if (length(other)) {
      out <- c(out, "", "-- other")
      for (c in other) out <- c(out, paste(pad(c$name, 18), pad(c$type, 10), pad(c$missing, 8)))
    }
    paste(out, collapse = "\n")
  }

  # A data frame to profile: loaded datasets, or any data frame in the global env.
  d$frame <- function(name) {
    x <- get0(name, envir = globalenv(), inherits = FALSE)
    if (is.null(x)) d$fail("no dataset named '", name, "'; load_data creates one (loaded: ", d$loaded_names(), ")")
    if (inherits(x, c("ArrowObject", "arrow_dplyr_query", "tbl_lazy"))) {
      x <- as.data.frame(dplyr::collect(utils::head(x, 100000L)))
    }
    if (!is.data.frame(x)) d$fail("'", name, "' is a ", class(x)[[1L]], ", not a data frame")
    x
  }

  d$loaded_names <- function() {
    n <- sort(ls(reg))
    if (length(n)) paste(n, collapse = ", ") else "none"
  }

  d$describe <- function(name, top_n = 5L) {
    x <- d$frame(name)
    n <- nrow(x)
    cols <- Map(function(nm, v) d$profile_column(nm, v, n, top_n), names(x), as.list(x))
    names(cols) <- NULL
    list(name = name, rows = n, n_columns = length(cols), columns = cols,
         memory_bytes = as.double(utils::object.size(x)),
         text = d$describe_text(name, n, cols))
  }

  # ---- loading ------------------------------------------------------------------

  d$valid_name <- function(name) {
    is.character(name) && length(name) == 1L && nzchar(name) && nchar(name) <= 64L &&
      grepl("^[A-Za-z][A-Za-z0-9_.]*$", name) && identical(make.names(name), name)
  }

  d$make_helpers <- function(name) {
    get_x <- function() get(name, envir = globalenv(), inherits = FALSE)
    helpers <- list(
      glimpse = function(width = NULL) {
        x <- get_x()
        if (d$has("dplyr")) dplyr::glimpse(x, width = width) else utils::str(x)
        invisible(x)
      },
      summary = function(top_n = 5L) {
        cat(.rsession_data$describe(name, top_n)$text, "\n", sep = "")
        invisible(get_x())
      },
      # the same data as a lazy dbplyr table on the query_data connection
      db = function() {
        d$need("dbplyr", "<name>_db()")
        con <- d$sql_con()
        d$sync_tables(con)
        dplyr::tbl(con, name)
      },
      slice_sample = function(n = 10L) {
        x <- get_x()
        if (inherits(x, c("ArrowObject", "arrow_dplyr_query", "tbl_lazy"))) return(dplyr::collect(utils::head(x, n)))
        x[sort(sample.int(nrow(x), min(n, nrow(x)))), , drop = FALSE]
      })
    for (h in names(helpers)) assign(paste0(name, "_", h), helpers[[h]], envir = globalenv())
    paste0(name, "_", names(helpers), "()")
  }

  # The global names make_helpers() gives `name`'s helpers.
  d$helper_names <- function(name) paste0(name, "_", c("glimpse", "summary", "db", "slice_sample"))

  d$load <- function(path, name, backend = "auto", options = list()) {
    if (!d$valid_name(name)) d$fail("name '", name, "' is not a plain R name (letters, digits, '_' and '.', starting with a letter, at most 64 characters)")
    if (startsWith(tolower(name), "sqlite_")) d$fail("names starting with 'sqlite_' are reserved by SQLite (query_data tables); choose another name")
    if (!backend %in% c("auto", "tibble", "arrow", "duckdb")) d$fail("backend must be auto, tibble, arrow or duckdb")
    full <- .rsession$resolve(path)
    format <- d$opt(options, "format", d$detect_format(full))
    if (is.null(d$format_backends[[format]])) d$fail("unknown format '", format, "'")
    size <- d$size_of(full)
    chosen <- d$choose_backend(backend, format, size)
    warnings <- character()
    started <- proc.time()[["elapsed"]]
    x <- tryCatch(withCallingHandlers(
      d$read(format, full, chosen$backend, options),
      warning = function(w) {
        warnings <<- c(warnings, conditionMessage(w))
        invokeRestart("muffleWarning")
      },
      message = function(m) invokeRestart("muffleMessage")),
      error = function(e) {
        msg <- conditionMessage(e)
        if (startsWith(msg, "rsession: ")) stop(e)
        d$fail("could not read '", path, "' as ", format, " (", chosen$backend, "): ", msg)
      })
    if (inherits(x, "rsession_duckdb_view")) {
      DBI::dbExecute(sql$con, sprintf("CREATE OR REPLACE VIEW %s AS SELECT * FROM %s", DBI::dbQuoteIdentifier(sql$con, name), x$source))
      x <- dplyr::tbl(sql$con, name)
      sql$written[[name]] <- x
    }
    assign(name, x, envir = globalenv())
    reg[[name]] <- list(name = name, path = path, format = format, backend = chosen$backend)
    helpers <- d$make_helpers(name)
    lazy <- !is.data.frame(x)
    preview_n <- d$opt(options, "preview_rows", 5L)
    if (lazy) {
      head_df <- as.data.frame(dplyr::collect(utils::head(x, preview_n)))
      rows <- if (inherits(x, "tbl_lazy")) dplyr::pull(dplyr::collect(dplyr::count(x)), 1L) else nrow(x)
      proto <- head_df
    } else {
      head_df <- utils::head(x, preview_n)
      rows <- nrow(x)
      proto <- x
    }
    cols <- lapply(names(proto), function(nm) {
      v <- proto[[nm]]
      list(name = nm, type = d$type_of(v), missing = if (lazy) NA_real_ else sum(is.na(v)))
    })
    mem <- if (lazy) NA_real_ else as.double(utils::object.size(x))
    list(name = name, path = path, format = format, backend = chosen$backend,
         backend_requested = backend, notes = I(chosen$notes), warnings = I(utils::head(warnings, 20L)),
         file_bytes = as.double(size), rows = as.double(rows), n_columns = length(cols),
         columns = cols, memory_bytes = mem, lazy = lazy,
         load_seconds = proc.time()[["elapsed"]] - started,
         helpers = I(helpers), preview = d$rows_of(head_df),
         preview_text = d$text_table(head_df))
  }

  # ---- SQL -------------------------------------------------------------------------

  # One SQL connection per R session: DuckDB when installed, else in-memory SQLite.
  d$sql_con <- function() {
    if (!is.null(sql$con) && DBI::dbIsValid(sql$con)) return(sql$con)
    if (d$has("duckdb")) {
      sql$con <- DBI::dbConnect(duckdb::duckdb(), dbdir = ":memory:")
      sql$engine <- "duckdb"
    } else {
      d$need("RSQLite", "query_data without duckdb")
      sql$con <- DBI::dbConnect(RSQLite::SQLite(), ":memory:")
      sql$engine <- "sqlite"
    }
    sql$con
  }

  # Dates and times become ISO 8601 text for SQLite (it has no date type).
  d$sql_ready <- function(df) {
    df <- as.data.frame(df, stringsAsFactors = FALSE)
    if (sql$engine == "sqlite") {
      for (nm in names(df)) {
        v <- df[[nm]]
        if (inherits(v, c("Date", "POSIXt"))) df[[nm]] <- d$plain(v)
        else if (is.factor(v)) df[[nm]] <- as.character(v)
      }
    }
    df
  }

  # (Re)write each loaded data frame whose R value changed since it was last
  # written (identical() on the same object is a pointer check).
  d$sync_tables <- function(con) {
    notes <- character()
    for (name in ls(reg)) {
      x <- get0(name, envir = globalenv(), inherits = FALSE)
      if (inherits(x, "tbl_lazy")) next
      if (inherits(x, c("ArrowObject", "arrow_dplyr_query"))) {
        if (sql$engine == "duckdb" && !identical(sql$written[[name]], x)) {
          duckdb::duckdb_register_arrow(con, name, x)
          sql$written[[name]] <- x
        }
        next
      }
      if (!is.data.frame(x)) {
        if (DBI::dbExistsTable(con, name)) DBI::dbRemoveTable(con, name)
        notes <- c(notes, sprintf("'%s' is no longer a data frame in R; its table was dropped", name))
        next
      }
      if (!identical(sql$written[[name]], x)) {
        tryCatch({
          if (sql$engine == "duckdb") duckdb::duckdb_register(con, name, d$sql_ready(x), overwrite = TRUE)
          else DBI::dbWriteTable(con, name, d$sql_ready(x), overwrite = TRUE)
        }, error = function(e) d$fail("dataset '", name, "' could not be made an SQL table: ", conditionMessage(e)))
        sql$written[[name]] <- x
      }
    }
    notes
  }

  d$query <- function(sql_text, params = NULL, max_rows = 1000L) {
    if (!length(ls(reg))) d$fail("no datasets are loaded; call load_data first")
    con <- d$sql_con()
    notes <- d$sync_tables(con)
    started <- proc.time()[["elapsed"]]
    res <- tryCatch({
      rs <- if (length(params)) DBI::dbSendQuery(con, sql_text, params = params) else DBI::dbSendQuery(con, sql_text)
      on.exit(DBI::dbClearResult(rs))
      df <- DBI::dbFetch(rs, n = max_rows)
      total <- nrow(df)
      # count the rest without keeping it, so a huge result costs no memory
      while (!DBI::dbHasCompleted(rs)) {
        chunk <- DBI::dbFetch(rs, n = 50000L)
        if (!nrow(chunk)) break
        total <- total + nrow(chunk)
      }
      list(df = df, total = total)
    }, error = function(e) d$fail("SQL error (", sql$engine, "): ", conditionMessage(e)))
    elapsed <- proc.time()[["elapsed"]] - started
    df <- res$df
    types <- vapply(df, d$type_of, "")
    list(engine = sql$engine, row_count = as.double(res$total), returned_rows = nrow(df),
         truncated = res$total > nrow(df), max_rows = max_rows,
         elapsed_ms = 1000 * elapsed, tables = I(sort(ls(reg))), notes = I(notes),
         column_types = I(unname(types)), result = d$rows_of(df),
         text = d$text_table(df))
  }

  # ---- help as text ------------------------------------------------------------------

  d$rd_text <- function(file) {
    rd <- utils:::.getHelpFile(file)
    out <- tempfile("rsession-help-")
    on.exit(unlink(out))
    tools::Rd2txt(rd, out = out, options = list(underline_titles = FALSE, width = 80L))
    paste(readLines(out, warn = FALSE, encoding = "UTF-8"), collapse = "\n")
  }

  d$help_text <- function(topic = NULL, package = NULL) {
    if (!is.null(package) && !nzchar(system.file(package = package))) {
      d$fail("package '", package, "' is not installed in this session")
    }
    if (is.null(topic)) {
      if (is.null(package)) topic <- "help"
      else {
        info <- utils::help(package = (package), help_type = "text")
        return(list(topic = NA_character_, package = package,
                    text = paste(format(info), collapse = "\n"), other_packages = I(character())))
      }
    }
    files <- if (is.null(package)) utils::help((topic), help_type = "text")
             else utils::help((topic), package = (package), help_type = "text")
    paths <- as.character(files)
    if (!length(paths)) {
      near <- utils::head(utils::apropos(topic, ignore.case = TRUE), 10L)
      d$fail("no help page for '", topic, "'", if (!is.null(package)) paste0(" in package '", package, "'") else " in the attached or installed packages",
             if (length(near)) paste0("; similar objects: ", paste(near, collapse = ", ")) else "",
             "; try help with a package, or ??", topic, " in execute_in_session")
    }
    pkgs <- basename(dirname(dirname(paths)))
    list(topic = topic, package = pkgs[[1L]], text = d$rd_text(paths[[1L]]),
         other_packages = I(pkgs[-1L]))
  }

  # vignette("x") prints its source (R Markdown or Sweave text) instead of
  # starting the help server and a browser.
  d$print_vignette <- function(x, ...) {
    src <- file.path(x$Dir, "doc", x$File)
    html <- if (nzchar(x$PDF)) file.path(x$Dir, "doc", x$PDF) else ""
    cat(sprintf("Vignette '%s' (package %s): %s\n\n", x$Topic, x$Package, x$Title))
    if (nzchar(x$File) && file.exists(src)) {
      cat(readLines(src, warn = FALSE, encoding = "UTF-8"), sep = "\n")
    } else if (nzchar(html) && file.exists(html) && tolower(tools::file_ext(html)) == "html") {
      txt <- if (d$has("xml2")) xml2::xml_text(xml2::read_html(html))
             else gsub("<[^>]+>", "", paste(readLines(html, warn = FALSE), collapse = "\n"))
      cat(txt, "\n")
    } else {
      cat("[rsession: this vignette has no text source; file: ", html, "]\n", sep = "")
    }
    invisible(x)
  }
  registerS3method("print", "vignette", d$print_vignette, envir = asNamespace("utils"))

  # ---- checkpoint and restore (harness_checkpoint.R) ------------------------------

  # The datasets load_data registered: name -> list(name, path, format, backend).
  d$registry <- function() as.list(reg)

  # Register a dataset again after a restore. In-memory (tibble) data came
  # back with the global environment, so only the entry is needed; lazy
  # backends (arrow, duckdb) hold external pointers and are read again from
  # their file. Returns TRUE, or stops with why it could not.
  d$reregister <- function(entry) {
    if (identical(entry$backend, "tibble") && exists(entry$name, envir = globalenv(), inherits = FALSE)) {
      reg[[entry$name]] <- entry
      d$make_helpers(entry$name)
    } else {
      d$load(entry$path, entry$name, entry$backend, list(format = entry$format))
    }
    TRUE
  }

  lockEnvironment(d, bindings = TRUE)
  if ("rsession:data" %in% search()) detach("rsession:data", character.only = TRUE)
  e <- attach(NULL, name = "rsession:data", warn.conflicts = FALSE)
  assign(".rsession_data", d, envir = e)
  lockEnvironment(e, bindings = TRUE)
  invisible(TRUE)
})
