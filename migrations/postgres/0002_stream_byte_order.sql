-- Stream names are ASCII identifiers (`category-id`) and are compared byte by byte, as
-- SQLite compares them: a category is the range `category-` up to `category.`, and one
-- category's streams are read in name order (a replay folds and writes one stream at a time).
-- A database created with a linguistic collation (e.g. en_US.UTF-8) would ignore the `-` and
-- order names differently, so the column, and with it the (stream, revision) index, uses "C".
ALTER TABLE events ALTER COLUMN stream TYPE TEXT COLLATE "C";
