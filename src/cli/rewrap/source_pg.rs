//! A PostgreSQL column as a rewrap source and sink: pages of `(key, value)`
//! in key order by keyset pagination (`WHERE key > $last ORDER BY key
//! LIMIT n`, never OFFSET), and batches of new values written in one
//! transaction each, only to rows that still hold the value that was read.
//!
//! Keys travel as text and are cast back to the key column's own type in
//! SQL, so any orderable unique column works (integers, text, uuid...) and
//! the index on it is used. Identifiers are quoted; the optional `--where`
//! condition is the operator's own SQL and is used as written.

use std::collections::HashSet;

use tokio_postgres::{Client, NoTls, Statement};

use super::RewrapError;

/// What to visit: a table, its value and key columns, an optional condition.
#[derive(Debug, Clone)]
pub(super) struct TableSpec {
    pub url: String,
    pub table: String,
    pub column: String,
    pub key_column: String,
    pub where_sql: Option<String>,
}

impl TableSpec {
    /// The server and database, without user or password, to tell jobs apart.
    pub(super) fn identity(&self) -> Result<String, RewrapError> {
        let config: tokio_postgres::Config =
            self.url.parse().map_err(|source| RewrapError::Postgres {
                during: "parsing the connection URL",
                source,
            })?;
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|host| match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        Ok(format!(
            "{}:{:?}/{}",
            hosts.join(","),
            config.get_ports(),
            config.get_dbname().unwrap_or("")
        ))
    }
}

/// Opens a connection; its driver runs on a task of its own.
pub(super) async fn connect(url: &str) -> Result<Client, RewrapError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|source| RewrapError::Postgres {
            during: "connecting",
            source,
        })?;
    tokio::spawn(async move {
        // A broken connection surfaces as an error of the next statement.
        let _ = connection.await;
    });
    Ok(client)
}

/// `"name"` with inner quotes doubled; `schema.table` becomes `"schema"."table"`.
fn quote_path(name: &str) -> String {
    name.split('.').map(quote).collect::<Vec<_>>().join(".")
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQL of a table, checked against its catalog once.
#[derive(Debug, Clone)]
pub(super) struct TableSql {
    first_page: String,
    next_page: String,
    update: String,
    count: String,
}

impl TableSql {
    /// Checks that `spec` names a table with both columns and a unique key
    /// column, and builds the statements.
    pub(super) async fn prepare(client: &Client, spec: &TableSpec) -> Result<Self, RewrapError> {
        let table = quote_path(&spec.table);
        let column = quote(&spec.column);
        let key = quote(&spec.key_column);
        let bad = |why: String| RewrapError::Table {
            table: spec.table.clone(),
            why,
        };
        let catalog = |source| RewrapError::Postgres {
            during: "reading the table's catalog",
            source,
        };
        let relation = client
            .query_opt("SELECT to_regclass($1)::oid", &[&table])
            .await
            .map_err(catalog)?
            .and_then(|row| row.get::<_, Option<u32>>(0))
            .ok_or_else(|| bad("no such table".into()))?;
        let column_type = |name: &str| {
            let name = name.to_owned();
            async move {
                client
                    .query_opt(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                         WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped",
                        &[&relation, &name],
                    )
                    .await
                    .map(|row| row.map(|row| row.get::<_, String>(0)))
            }
        };
        let key_type = column_type(&spec.key_column)
            .await
            .map_err(catalog)?
            .ok_or_else(|| bad(format!("no column {:?}", spec.key_column)))?;
        column_type(&spec.column)
            .await
            .map_err(catalog)?
            .ok_or_else(|| bad(format!("no column {:?}", spec.column)))?;
        // Keyset pagination skips or repeats rows unless the key is unique.
        let unique: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a \
                   ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                 WHERE i.indrelid = $1 AND i.indisunique AND i.indnkeyatts = 1 \
                   AND i.indpred IS NULL AND a.attname = $2)",
                &[&relation, &spec.key_column],
            )
            .await
            .map_err(catalog)?
            .get(0);
        if !unique {
            return Err(bad(format!(
                "{:?} has no unique index of its own: keyset pagination needs a unique key column",
                spec.key_column
            )));
        }
        let condition = spec
            .where_sql
            .as_deref()
            .map(|sql| format!(" AND ({sql})"))
            .unwrap_or_default();
        let select = format!("SELECT t.{key}::text, t.{column}::text FROM {table} AS t");
        Ok(Self {
            first_page: format!("{select} WHERE true{condition} ORDER BY t.{key} LIMIT $1"),
            next_page: format!(
                "{select} WHERE t.{key} > $2::text::{key_type}{condition} ORDER BY t.{key} LIMIT $1"
            ),
            // `t.column = v.old`: a row the application changed since it was
            // read keeps the application's value.
            update: format!(
                "UPDATE {table} AS t SET {column} = v.new \
                 FROM unnest($1::text[], $2::text[], $3::text[]) AS v(k, old, new) \
                 WHERE t.{key} = v.k::{key_type} AND t.{column} = v.old \
                 RETURNING v.k"
            ),
            count: format!(
                "SELECT count(*) FROM {table} AS t WHERE ($1::text IS NULL OR t.{key} > $1::text::{key_type}){condition}"
            ),
        })
    }

    /// Rows after `after` (all rows when `None`) that the job will visit.
    pub(super) async fn count(
        &self,
        client: &Client,
        after: Option<&str>,
    ) -> Result<u64, RewrapError> {
        let row = client
            .query_one(&self.count, &[&after])
            .await
            .map_err(|source| RewrapError::Postgres {
                during: "counting the rows",
                source,
            })?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }
}

/// One row read: its key (as text) and its value (`None` for NULL).
pub(super) struct Row {
    pub key: String,
    pub value: Option<String>,
}

/// Reads pages in key order.
pub(super) struct Pager {
    client: Client,
    first: Statement,
    next: Statement,
}

impl Pager {
    /// A pager over its own connection.
    pub(super) async fn new(client: Client, sql: &TableSql) -> Result<Self, RewrapError> {
        let prepare = |source| RewrapError::Postgres {
            during: "preparing the page query (check --where)",
            source,
        };
        let first = client.prepare(&sql.first_page).await.map_err(prepare)?;
        let next = client.prepare(&sql.next_page).await.map_err(prepare)?;
        Ok(Self {
            client,
            first,
            next,
        })
    }

    /// Up to `limit` rows with keys after `after`, in key order.
    pub(super) async fn page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Row>, RewrapError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match after {
            None => self.client.query(&self.first, &[&limit]).await,
            Some(after) => self.client.query(&self.next, &[&limit, &after]).await,
        }
        .map_err(|source| RewrapError::Postgres {
            during: "reading a page",
            source,
        })?;
        rows.iter()
            .map(|row| {
                let key: Option<String> = row.get(0);
                Ok(Row {
                    // A unique index may hold one NULL key, which `>` never
                    // reaches again; refuse rather than loop.
                    key: key.ok_or(RewrapError::Protocol(
                        "a row has a NULL key: give it a key or exclude it with --where",
                    ))?,
                    value: row.get(1),
                })
            })
            .collect()
    }
}

/// One new value to write: the row's key, the value read, the new value.
pub(super) struct Change {
    pub key: String,
    pub old: String,
    pub new: String,
}

/// Writes batches, each in its own transaction.
pub(super) struct Writer {
    client: Client,
    update: Statement,
}

impl Writer {
    /// A writer over its own connection.
    pub(super) async fn new(client: Client, sql: &TableSql) -> Result<Self, RewrapError> {
        let update = client
            .prepare(&sql.update)
            .await
            .map_err(|source| RewrapError::Postgres {
                during: "preparing the update",
                source,
            })?;
        Ok(Self { client, update })
    }

    /// Writes `changes` in one transaction; returns the keys of the rows
    /// updated (the others changed since they were read).
    pub(super) async fn write(
        &mut self,
        changes: &[Change],
    ) -> Result<HashSet<String>, RewrapError> {
        if changes.is_empty() {
            return Ok(HashSet::new());
        }
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        let old: Vec<&str> = changes.iter().map(|c| c.old.as_str()).collect();
        let new: Vec<&str> = changes.iter().map(|c| c.new.as_str()).collect();
        let failed = |during| move |source| RewrapError::Postgres { during, source };
        let transaction = self
            .client
            .transaction()
            .await
            .map_err(failed("starting a transaction"))?;
        let rows = transaction
            .query(&self.update, &[&keys, &old, &new])
            .await
            .map_err(failed("updating a batch"))?;
        transaction
            .commit()
            .await
            .map_err(failed("committing a batch"))?;
        Ok(rows.iter().map(|row| row.get::<_, String>(0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote("col"), "\"col\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_path("app.users"), "\"app\".\"users\"");
    }
}
