-- Fees fixed when a request is made, shown to the person, and counted against spending limits:
-- the EIP-1559 maximums (or, on a chain without a base fee, the legacy gas price in
-- max_fee_per_gas and no priority fee), the worst case gas_limit × max_fee_per_gas, and, once the
-- receipt is in, the fee actually paid (gasUsed × effectiveGasPrice). Decimal text, compared as
-- U256 in Rust, never in SQL. NULL on rows from before fees were recorded.
ALTER TABLE transactions ADD COLUMN fee_model TEXT CHECK (fee_model IN ('eip1559', 'legacy'));
ALTER TABLE transactions ADD COLUMN max_fee_per_gas TEXT;
ALTER TABLE transactions ADD COLUMN max_priority_fee_per_gas TEXT;
ALTER TABLE transactions ADD COLUMN max_fee_wei TEXT;
ALTER TABLE transactions ADD COLUMN fee_wei TEXT;
