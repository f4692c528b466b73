#!/usr/bin/env bash
# A PostgreSQL 15 from apt on this machine holding a small synthetic OMOP CDM (person,
# observation_period, condition_occurrence, drug_exposure, concept; rows generated in SQL with a
# fixed seed, so counts are the same every run). Listens on loopback and on the node address
# (default 10.240.0.1, the bridge the session pods reach). Idempotent.
# Prints the connection as RSESSION_E2E_PG_* export lines on stdout (progress on stderr).
# Needs root and: apt-get install postgresql (done here when missing).
set -euo pipefail
NODE_IP="${RSESSION_NODE_IP:-10.240.0.1}"
DB=cdm USER_=analyst PASS="${RSESSION_E2E_PG_PASSWORD:-e2e-analyst}" SCHEMA=cdm_synthetic
log() { echo "[omop-postgres] $*" >&2; }
# stdout is the caller's `eval` input: only the export lines at the end go there. Everything
# else (pg_ctlcluster prints "Removed stale pid file." after an unclean stop) goes to stderr.
# A block redirect, not `exec 3>&1`: a spare descriptor would be inherited by the postmaster
# and hold the caller's `$(...)` open for as long as PostgreSQL runs.
{

if ! command -v pg_ctlcluster >/dev/null; then
  log "installing postgresql from apt"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
fi
ver="$(ls /etc/postgresql | sort -n | tail -1)"
conf="/etc/postgresql/$ver/main"
want="listen_addresses = 'localhost,$NODE_IP'"
if ! grep -qxF "$want" "$conf/conf.d/rsession-e2e.conf" 2>/dev/null; then
  echo "$want" > "$conf/conf.d/rsession-e2e.conf"
  log "listening on localhost and $NODE_IP"
fi
rule="host $DB $USER_ 10.0.0.0/8 scram-sha-256"
grep -qxF "$rule" "$conf/pg_hba.conf" || echo "$rule" >> "$conf/pg_hba.conf"
if pg_ctlcluster "$ver" main status >/dev/null 2>&1; then
  pg_ctlcluster "$ver" main reload
  # listen_addresses takes a restart: a server started while the node address did not exist
  # (cluster down) listens on loopback only, and sessions would get "connection refused".
  if ! pg_isready -q -t 3 -h "$NODE_IP"; then
    log "not listening on $NODE_IP; restarting"
    pg_ctlcluster "$ver" main restart
  fi
else
  pg_ctlcluster "$ver" main start
fi
psql_() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qAt "$@"; }
# wait (bounded) until the server accepts connections
for _ in $(seq 1 100); do pg_isready -q -h 127.0.0.1 && break; pg_isready -t 1 -q -h 127.0.0.1 || true; done
pg_isready -h 127.0.0.1 >&2
pg_isready -h "$NODE_IP" >&2 || { log "PostgreSQL does not listen on $NODE_IP (is the cluster up?)"; exit 1; }

psql_ -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='$USER_') THEN CREATE ROLE $USER_ LOGIN; END IF; END\$\$"
psql_ -c "ALTER ROLE $USER_ PASSWORD '$PASS'"
psql_ -tc "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1 || psql_ -c "CREATE DATABASE $DB OWNER $USER_"
if ! psql_ -d "$DB" -tc "SELECT to_regclass('$SCHEMA.drug_exposure') IS NOT NULL" | grep -q t; then
  log "loading the synthetic CDM into $DB.$SCHEMA"
  psql_ -d "$DB" <<SQL
CREATE SCHEMA $SCHEMA AUTHORIZATION $USER_;
SET search_path = $SCHEMA;
SELECT setseed(0.42);
CREATE TABLE concept (concept_id int PRIMARY KEY, concept_name text NOT NULL, domain_id text NOT NULL,
  vocabulary_id text NOT NULL, concept_class_id text NOT NULL, standard_concept text, concept_code text NOT NULL);
INSERT INTO concept VALUES
  (201826, 'Type 2 diabetes mellitus', 'Condition', 'SNOMED', 'Clinical Finding', 'S', '44054006'),
  (316866, 'Hypertensive disorder', 'Condition', 'SNOMED', 'Clinical Finding', 'S', '38341003'),
  (1503297, 'metformin', 'Drug', 'RxNorm', 'Ingredient', 'S', '6809'),
  (1308216, 'lisinopril', 'Drug', 'RxNorm', 'Ingredient', 'S', '29046'),
  (8507, 'MALE', 'Gender', 'Gender', 'Gender', 'S', 'M'),
  (8532, 'FEMALE', 'Gender', 'Gender', 'Gender', 'S', 'F');
CREATE TABLE person (person_id int PRIMARY KEY, gender_concept_id int NOT NULL, year_of_birth int NOT NULL,
  race_concept_id int NOT NULL DEFAULT 0, ethnicity_concept_id int NOT NULL DEFAULT 0);
INSERT INTO person (person_id, gender_concept_id, year_of_birth)
  SELECT g, CASE WHEN random() < 0.5 THEN 8507 ELSE 8532 END, 1930 + floor(random() * 75)::int
  FROM generate_series(1, 1000) g;
CREATE TABLE observation_period (observation_period_id int PRIMARY KEY, person_id int NOT NULL REFERENCES person,
  observation_period_start_date date NOT NULL, observation_period_end_date date NOT NULL, period_type_concept_id int NOT NULL DEFAULT 44814724);
INSERT INTO observation_period (observation_period_id, person_id, observation_period_start_date, observation_period_end_date)
  SELECT person_id, person_id, date '2010-01-01' + floor(random() * 1000)::int, date '2016-01-01' + floor(random() * 2000)::int FROM person;
CREATE TABLE condition_occurrence (condition_occurrence_id serial PRIMARY KEY, person_id int NOT NULL REFERENCES person,
  condition_concept_id int NOT NULL, condition_start_date date NOT NULL, condition_type_concept_id int NOT NULL DEFAULT 32817);
INSERT INTO condition_occurrence (person_id, condition_concept_id, condition_start_date)
  SELECT person_id, CASE WHEN random() < 0.4 THEN 201826 ELSE 316866 END, date '2012-01-01' + floor(random() * 2500)::int
  FROM person, generate_series(1, 2) WHERE random() < 0.45;
CREATE TABLE drug_exposure (drug_exposure_id serial PRIMARY KEY, person_id int NOT NULL REFERENCES person,
  drug_concept_id int NOT NULL, drug_exposure_start_date date NOT NULL, drug_exposure_end_date date, drug_type_concept_id int NOT NULL DEFAULT 38000177);
INSERT INTO drug_exposure (person_id, drug_concept_id, drug_exposure_start_date, drug_exposure_end_date)
  SELECT person_id, CASE WHEN random() < 0.5 THEN 1503297 ELSE 1308216 END, d, d + 30
  FROM (SELECT person_id, date '2012-06-01' + floor(random() * 2500)::int AS d FROM person, generate_series(1, 3) WHERE random() < 0.35) x;
GRANT USAGE ON SCHEMA $SCHEMA TO $USER_;
GRANT SELECT ON ALL TABLES IN SCHEMA $SCHEMA TO $USER_;
SQL
fi
} >&2

cat <<OUT
export RSESSION_E2E_PG_HOST=$NODE_IP
export RSESSION_E2E_PG_PORT=5432
export RSESSION_E2E_PG_DB=$DB
export RSESSION_E2E_PG_USER=$USER_
export RSESSION_E2E_PG_PASSWORD=$PASS
export RSESSION_E2E_PG_SCHEMA=$SCHEMA
OUT
