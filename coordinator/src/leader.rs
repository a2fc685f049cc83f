//! Leadership by PostgreSQL session advisory lock on a dedicated connection:
//! the holder runs a singleton task (the scheduler, the retention sweeper);
//! the others keep trying. When the holder dies its connection closes, the
//! lock is released, and another coordinator takes it on its next tick.

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

/// One advisory lock, tried and checked on every tick.
pub struct Leadership {
    connect: PgConnectOptions,
    key: i64,
    /// What the lock is for, in log lines.
    role: &'static str,
    /// The dedicated connection, and whether it holds the lock.
    conn: Option<(PgConnection, bool)>,
}

impl Leadership {
    pub fn new(connect: PgConnectOptions, key: i64, role: &'static str) -> Self {
        Leadership {
            connect,
            key,
            role,
            conn: None,
        }
    }

    /// True when this coordinator holds the lock (taking it if free).
    pub async fn check(&mut self) -> bool {
        if self.conn.is_none() {
            match self.connect.connect().await {
                Ok(conn) => self.conn = Some((conn, false)),
                Err(error) => {
                    tracing::warn!(role = self.role, error = %error, "cannot connect to the state database");
                    return false;
                }
            }
        }
        let Some((conn, held)) = self.conn.as_mut() else {
            return false;
        };
        let outcome = if *held {
            sqlx::query("SELECT 1")
                .execute(&mut *conn)
                .await
                .map(|_| true)
        } else {
            sqlx::query_as::<_, (bool,)>("SELECT pg_try_advisory_lock($1)")
                .bind(self.key)
                .fetch_one(&mut *conn)
                .await
                .map(|(locked,)| locked)
        };
        match outcome {
            Ok(now_held) => {
                if now_held && !*held {
                    tracing::info!(role = self.role, "this coordinator is now the leader");
                }
                *held = now_held;
                now_held
            }
            Err(error) => {
                // A dead connection means the lock is gone too.
                tracing::warn!(role = self.role, error = %error, "lost the leader lock connection");
                self.conn = None;
                false
            }
        }
    }

    /// Closes the connection, releasing the lock.
    pub async fn release(self) {
        if let Some((conn, _)) = self.conn {
            drop(conn.close().await);
        }
    }
}
