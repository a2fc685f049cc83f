-- pgvault state database, version 31: webhook URLs sealed at rest. A
-- webhook's URL is often its credential (Slack, Teams and most receivers
-- take a token in the path or query), so it is sealed with the master key
-- as secret values are: AES-256-GCM with a random 96-bit nonce, bound to
-- its vault and channel name (AAD "pgvault-webhook:{vault}:{channel}").
-- Rows written by earlier versions keep the plain URL in `url` until a
-- coordinator of this version starts and seals them under the migration
-- lock (store::notifications::seal_plain_urls); `url` is then NULL.

ALTER TABLE notification_channels
    ALTER COLUMN url DROP NOT NULL,
    ADD COLUMN url_nonce      bytea,
    ADD COLUMN url_ciphertext bytea,
    ADD CONSTRAINT notification_channels_url_sealed CHECK
        ((url_nonce IS NULL) = (url_ciphertext IS NULL)
         AND (url IS NULL) <> (url_ciphertext IS NULL));
