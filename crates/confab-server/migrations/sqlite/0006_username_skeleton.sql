-- The username skeleton folds look-alike pairs towards their longer form (m to rn, w to vv):
-- folding vv to w from the left made "vwx" and "vvvx" differ. Must match `skeleton()` in
-- service/accounts.rs. Existing accounts keep their names; only the comparison changes.
UPDATE users SET username_skeleton =
    replace(replace(replace(replace(replace(replace(replace(
        lower(username), '0', 'o'), '1', 'l'), 'i', 'l'), 'm', 'rn'), 'w', 'vv'), '-', '_'), '.', '_');
