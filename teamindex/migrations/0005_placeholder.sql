-- Placeholder on branch sec-b only, so 0006 has a predecessor (migrations are numbered
-- without gaps). The users-table rebuild of another branch takes number 5: drop this file
-- when merging that branch. It changes nothing.
SELECT 1;
