
# RSession database tools: SQL over the session's own database (query_data with
# target "database") and describe_database.
#
# The session's database is the one the RSession's spec.database names; the
# pod's R sees it through libpq's variables (PGHOST, PGPORT, PGDATABASE,
# PGUSER), which in a cluster point at the pod's credential proxy on its
# loopback: no password in R. The direct backend passes PGPASSWORD when the
# user's environment has one. One
# connection per R process, opened on first use and reopened when it broke.
# Driver: RPostgres when installed, else RPostgreSQL. Results follow the
# conventions of harness_data.R (I() for arrays, NA as null).
#
# Entry points (called by rsession-mcp, never by users):
#   .rsession_db$query(sql, params, max_rows)
#   .rsession_db$describe(schema, max_tables, offset)
#   .rsession_db$cdm_setup()   at every connect: the `cdm` handle when CDM_SCHEMA is set
local({
  b <- new.env(parent = globalenv())
  state <- new.env(parent = emptyenv())
  data <- .rsession_data

  b$con <- function() {
    if (!is.null(state$con) && isTRUE(tryCatch(DBI::dbIsValid(state$con), error = function(e) FALSE))) {
      return(state$con)
    }
    env <- function(name) Sys.getenv(name, unset = "")
    if (!nzchar(env("PGHOST"))) {
      data$fail("this session has no database: PGHOST is not set (in a cluster, spec.database of the RSession names one; elsewhere set libpq's PGHOST, PGPORT, PGDATABASE, PGUSER for R)")
    }
    port <- if (nzchar(env("PGPORT"))) as.integer(env("PGPORT")) else 5432L
    args <- list(host = env("PGHOST"), port = port, dbname = env("PGDATABASE"), user = env("PGUSER"))
    if (nzchar(env("PGPASSWORD"))) args$password <- env("PGPASSWORD")
    drv <- if (data$has("RPostgres")) RPostgres::Postgres()
           else if (data$has("RPostgreSQL")) RPostgreSQL::PostgreSQL()
           else data$fail("connecting to the session's database needs the R package RPostgres or RPostgreSQL, and this image has neither")
    state$driver <- if (inherits(drv, "PqDriver")) "RPostgres" else "RPostgreSQL"
    state$con <- tryCatch(do.call(DBI::dbConnect, c(list(drv), args)),
      error = function(e) data$fail("cannot connect to the session's database at ", args$host, ":", port, ": ", conditionMessage(e)))
    state$con
  }

  # One statement; at most max_rows rows kept, the rest counted.
  b$query <- function(sql_text, params = NULL, max_rows = 1000L) {
    con <- b$con()
    started <- proc.time()[["elapsed"]]
    res <- tryCatch({
      rs <- if (length(params)) DBI::dbSendQuery(con, sql_text, params = unname(as.list(params)))
            else DBI::dbSendQuery(con, sql_text)
      on.exit(DBI::dbClearResult(rs))
      df <- DBI::dbFetch(rs, n = max_rows)
      total <- nrow(df)
      while (!DBI::dbHasCompleted(rs)) {
        chunk <- DBI::dbFetch(rs, n = 50000L)
        if (!nrow(chunk)) break
        total <- total + nrow(chunk)
      }
      list(df = df, total = total)
    }, error = function(e) {
      msg <- conditionMessage(e)
      if (startsWith(msg, "rsession: ")) stop(e)
      data$fail("SQL error (postgresql): ", msg)
    })
    elapsed <- proc.time()[["elapsed"]] - started
    df <- res$df
    list(engine = "postgresql", row_count = as.double(res$total), returned_rows = nrow(df),
         truncated = res$total > nrow(df), max_rows = max_rows,
         elapsed_ms = 1000 * elapsed, tables = I(character()), notes = I(character()),
         column_types = I(unname(vapply(df, data$type_of, ""))), result = data$rows_of(df),
         text = data$text_table(df))
  }

  b$get <- function(sql_text) DBI::dbGetQuery(b$con(), sql_text)

  # Schemas; tables, views and materialized views with their columns and the
  # planner's row estimate (pg_class.reltuples: -1 or 0 before ANALYZE), in
  # pages of max_tables from offset.
  b$describe <- function(schema = NULL, max_tables = 100L, offset = 0L) {
    system_schema <- "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"
    schemas <- b$get(paste0("SELECT n.nspname AS schema FROM pg_namespace n WHERE ", system_schema, " ORDER BY 1"))$schema
    where <- paste0("c.relkind IN ('r', 'p', 'v', 'm', 'f') AND ", system_schema)
    if (!is.null(schema)) where <- paste0(where, " AND n.nspname = ", DBI::dbQuoteString(b$con(), schema))
    total <- b$get(paste0("SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ", where))$n
    tables <- b$get(paste0(
      "SELECT n.nspname AS schema, c.relname AS name, c.oid AS oid,
              CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'table' END AS kind,
              c.reltuples::float8 AS approx_rows
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ", where,
      " ORDER BY 1, 2 LIMIT ", as.integer(max_tables), " OFFSET ", as.integer(offset)))
    cols <- if (nrow(tables)) b$get(paste0(
      "SELECT a.attrelid AS oid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable
       FROM pg_attribute a WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attrelid IN (",
      paste(tables$oid, collapse = ", "), ") ORDER BY a.attrelid, a.attnum")) else NULL
    out <- lapply(seq_len(nrow(tables)), function(i) {
      mine <- cols[cols$oid == tables$oid[[i]], , drop = FALSE]
      list(schema = tables$schema[[i]], name = tables$name[[i]], kind = tables$kind[[i]],
           approx_rows = if (tables$approx_rows[[i]] < 0) NA_real_ else tables$approx_rows[[i]],
           columns = lapply(seq_len(nrow(mine)), function(j)
             list(name = mine$name[[j]], type = mine$type[[j]], nullable = isTRUE(mine$nullable[[j]]))))
    })
    shown <- offset + length(out)
    list(schemas = I(schemas), total_tables = as.double(total), offset = as.double(offset),
         tables = out, next_offset = if (shown < total) as.double(shown) else NA_real_)
  }

  # OMOP CDM v5.4 tables (clinical, health system, economics, derived, metadata, vocabulary,
  # results) that the `cdm` handle exposes when found.
  b$cdm_tables <- c(
    "person", "observation_period", "visit_occurrence", "visit_detail", "condition_occurrence",
    "drug_exposure", "procedure_occurrence", "device_exposure", "measurement", "observation",
    "death", "note", "note_nlp", "specimen", "fact_relationship", "location", "care_site",
    "provider", "payer_plan_period", "cost", "drug_era", "dose_era", "condition_era", "episode",
    "episode_event", "metadata", "cdm_source", "concept", "vocabulary", "domain",
    "concept_class", "concept_relationship", "relationship", "concept_synonym",
    "concept_ancestor", "source_to_concept_map", "drug_strength", "cohort", "cohort_definition")

  # When the session's database is an OMOP CDM (CDM_SCHEMA set; CDM_VOCABULARY_SCHEMA,
  # CDM_RESULTS_SCHEMA and CDM_WRITE_SCHEMA optional), put `cdm` in the global environment:
  # CDMConnector's cdm_from_con() when the image has CDMConnector, else a named list of lazy
  # dbplyr tables, one per CDM table found. NULL without CDM_SCHEMA; a failure is reported,
  # never raised, so the session still starts.
  b$cdm_setup <- function() {
    schema <- Sys.getenv("CDM_SCHEMA", unset = "")
    if (!nzchar(schema)) return(NULL)
    schema_of <- function(var) { v <- Sys.getenv(var, unset = ""); if (nzchar(v)) v else schema }
    vocab <- schema_of("CDM_VOCABULARY_SCHEMA")
    results <- schema_of("CDM_RESULTS_SCHEMA")
    write <- schema_of("CDM_WRITE_SCHEMA")
    tryCatch({
      con <- b$con()
      found <- DBI::dbGetQuery(con, paste0(
        "SELECT table_schema AS s, table_name AS t FROM information_schema.tables WHERE table_schema IN (",
        paste(DBI::dbQuoteString(con, unique(c(schema, vocab, results))), collapse = ", "), ")"))
      found <- found[tolower(found$t) %in% b$cdm_tables, , drop = FALSE]
      # A table in the CDM schema wins over a copy in the vocabulary or results schema.
      found <- found[order(match(found$s, c(schema, vocab, results))), , drop = FALSE]
      found <- found[!duplicated(tolower(found$t)), , drop = FALSE]
      if (!"person" %in% tolower(found$t)) data$fail("no person table in schema ", schema)
      person <- found$s[tolower(found$t) == "person"]
      persons <- DBI::dbGetQuery(con, paste0("SELECT count(*) AS n FROM ",
        DBI::dbQuoteIdentifier(con, DBI::Id(schema = person, table = "person"))))$n
      version <- NA_character_
      if ("cdm_source" %in% tolower(found$t)) {
        src <- found$s[tolower(found$t) == "cdm_source"]
        version <- tryCatch(as.character(DBI::dbGetQuery(con, paste0("SELECT cdm_version FROM ",
          DBI::dbQuoteIdentifier(con, DBI::Id(schema = src, table = "cdm_source")), " LIMIT 1"))[[1]][1]),
          error = function(e) NA_character_)
      }
      if (data$has("CDMConnector")) {
        cdm <- CDMConnector::cdm_from_con(con, cdm_schema = schema, write_schema = write)
        handle <- "CDMConnector"
      } else {
        if (!data$has("dbplyr")) data$fail("the cdm handle needs dbplyr or CDMConnector")
        cdm <- lapply(seq_len(nrow(found)), function(i)
          dplyr::tbl(con, dbplyr::in_schema(found$s[[i]], found$t[[i]])))
        names(cdm) <- tolower(found$t)
        handle <- "dbplyr"
      }
      assign("cdm", cdm, envir = globalenv())
      list(handle = handle, schema = schema, vocabulary_schema = vocab, results_schema = results,
           write_schema = write, tables = I(sort(tolower(found$t))), cdm_version = version,
           persons = as.double(persons))
    }, error = function(e) list(handle = NA_character_, schema = schema, error = conditionMessage(e)))
  }

  lockEnvironment(b, bindings = TRUE)
  if ("rsession:db" %in% search()) detach("rsession:db", character.only = TRUE)
  e <- attach(NULL, name = "rsession:db", warn.conflicts = FALSE)
  assign(".rsession_db", b, envir = e)
  lockEnvironment(e, bindings = TRUE)
  invisible(TRUE)
})
