/*
 * catalogue.c — the OnChainPay endpoint catalogue (ocp-api.md §5).
 *
 * Keep the table sorted in byte (strcmp) order: catalogue_has() relies on it
 * and tests/integration/test_sim.py checks it.  Two paths rest only on a docs
 * page slug (get-transaction-history, auto-withdrawals/create); see §5.
 */
#include <string.h>

#include "catalogue.h"

const char *const catalogue_paths[] = {
	"/api-gateway/account-addresses",
	"/api-gateway/address-book/add",
	"/api-gateway/address-book/get",
	"/api-gateway/address-book/remove",
	"/api-gateway/address-book/update",
	"/api-gateway/addresses/find-by-address",
	"/api-gateway/addresses/find-by-id",
	"/api-gateway/addresses/last-transaction",
	"/api-gateway/addresses/set-meta",
	"/api-gateway/addresses/transactions",
	"/api-gateway/advanced-balance",
	"/api-gateway/advanced-balance-deposit-address",
	"/api-gateway/advanced-balances",
	"/api-gateway/auto-swaps/create",
	"/api-gateway/auto-swaps/get",
	"/api-gateway/auto-withdrawals/approve",
	"/api-gateway/auto-withdrawals/create",
	"/api-gateway/auto-withdrawals/get",
	"/api-gateway/available-currencies",
	"/api-gateway/bridge/create",
	"/api-gateway/bridge/fee-token",
	"/api-gateway/bridge/get",
	"/api-gateway/bridge/limit",
	"/api-gateway/business-address",
	"/api-gateway/business-addresses",
	"/api-gateway/create-payout-address",
	"/api-gateway/find-tx",
	"/api-gateway/get-invoice",
	"/api-gateway/get-invoices",
	"/api-gateway/get-transaction-history",
	"/api-gateway/get-withdrawal",
	"/api-gateway/kyt/check-transfer",
	"/api-gateway/kyt/check-withdrawal-address",
	"/api-gateway/kyt/withdrawal-address-screening",
	"/api-gateway/make-invoice",
	"/api-gateway/make-order",
	"/api-gateway/make-withdrawal",
	"/api-gateway/make-withdrawal-async",
	"/api-gateway/order",
	"/api-gateway/orders",
	"/api-gateway/orphan-deposits/get-deposit",
	"/api-gateway/orphan-deposits/get-deposits",
	"/api-gateway/orphan-deposits/withdrawal",
	"/api-gateway/orphan-deposits/withdrawal-token",
	"/api-gateway/payout-balances",
	"/api-gateway/personal-addresses/add-trusted-address",
	"/api-gateway/personal-addresses/create-user",
	"/api-gateway/personal-addresses/del-trusted-address",
	"/api-gateway/personal-addresses/get-trusted-addresses",
	"/api-gateway/personal-addresses/get-user",
	"/api-gateway/personal-addresses/get-user-address",
	"/api-gateway/personal-addresses/get-user-addresses",
	"/api-gateway/price-rate",
	"/api-gateway/recurrent-addresses",
	"/api-gateway/recurrents/cancel-subscription",
	"/api-gateway/recurrents/create-subscriber-billing-link",
	"/api-gateway/recurrents/create-subscription",
	"/api-gateway/recurrents/disable-subscriber-billing-link",
	"/api-gateway/recurrents/get-billing-link",
	"/api-gateway/recurrents/get-billing-links-by-subscriber",
	"/api-gateway/recurrents/get-subscription",
	"/api-gateway/recurrents/make-payment",
	"/api-gateway/swaps/create",
	"/api-gateway/swaps/fee-token",
	"/api-gateway/swaps/get",
	"/api-gateway/swaps/limit",
	"/api-gateway/test-signature",
	"/api-gateway/track-addresses/add-address",
	"/api-gateway/utils/validate-address",
	"/api-gateway/webhooks/get",
	"/api-gateway/webhooks/get-verbose",
	"/api-gateway/withdrawal-fee-token",
	"/partner/api/create-api-keys",
	"/partner/api/create-user",
	"/partner/api/create-user-organization",
	"/partner/api/delete-api-keys",
	"/partner/api/get-api-keys",
	"/partner/api/get-default-tariffs",
	"/partner/api/get-organization-advanced-balances",
	"/partner/api/get-organization-tariffs",
	"/partner/api/get-user",
	"/partner/api/get-user-organizations",
	"/partner/api/get-users",
	"/partner/api/set-organization-tariff",
	"/partner/api/top-up-advanced-balance",
};

const size_t catalogue_count =
    sizeof(catalogue_paths) / sizeof(catalogue_paths[0]);

_Static_assert(sizeof(catalogue_paths) / sizeof(catalogue_paths[0]) ==
    CATALOGUE_PATHS, "catalogue must hold every method of ocp-api.md §5");

/* Byte-order comparison of a counted key against a table entry. */
static int
catalogue_cmp(const char *key, size_t klen, const char *entry)
{
	size_t	elen = strlen(entry);
	int	c;

	c = memcmp(key, entry, klen < elen ? klen : elen);
	if (c != 0)
		return c;
	return klen < elen ? -1 : klen > elen ? 1 : 0;
}

/* Binary search for an exact match. */
int
catalogue_has(const char *path, size_t len)
{
	size_t	lo = 0, hi = catalogue_count, mid;
	int	c;

	if (path == NULL)
		return 0;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = catalogue_cmp(path, len, catalogue_paths[mid]);
		if (c == 0)
			return 1;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}
