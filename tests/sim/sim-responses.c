/*
 * sim-responses.c — a realistic success body for every catalogue endpoint.
 *
 * Templates are JSON written with ' for " (so they stay readable in C) and
 * $-placeholders that are filled with fresh random values per reply:
 *   $U uuid            $A EVM address       $T TRON address
 *   $H tx hash         $D ISO-8601 now      $M amount string "123.45000000"
 *   $P fake password   $K 88-char base64 key $F fee token (OpenSSL "Salted__")
 *   $X 64 hex chars    $p the caller's public key as a JSON string
 * Shapes follow ocp-api.md and the SDK types; values are fake.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "catalogue.h"
#include "sim.h"

/* Shared fragments. */
#define ADDRESS	"{'id':'$U','currency':'USDT','network':'tron','address':'$T'," \
		"'tag':null,'balance':'$M','alias':'sim','comment':null,'meta':null}"
#define TX	"{'id':'$U','type':'deposit','status':'processed','currency':'USDT'," \
		"'network':'tron','amount':'$M','fee':'0.00000000','tx':'$H'," \
		"'addressFrom':'$T','addressTo':'$T','createdAt':'$D'}"
#define ADV	"{'advancedBalanceId':'$U','currency':'USD','blocked':false," \
		"'blockReason':null,'balance':'$M','availableCurrenciesForDeposit':" \
		"['USDT','ETH','BTC']}"
#define PUSER	"{'id':'$U','clientId':'sim-client-1','clientEmail':" \
		"'user@example.test','clientName':'Sim User','depositWebhookUrl':null," \
		"'createdAt':'$D'}"
#define TRUSTED	"{'id':'$U','address':'$T','currency':'USDT','network':'tron'," \
		"'createdAt':'$D'}"
#define ORDER	"{'orderId':'$U','status':'init','link':'https://pay.example.test/$U'," \
		"'currency':'USDT','network':'tron','amount':'$M','received':'0.00000000'," \
		"'address':'$T','tag':null,'clientOrderId':'sim-order-1'," \
		"'expiresAt':'$D','createdAt':'$D','transactions':[]}"
#define WDRAW(st, tx) "{'id':'$U','advancedBalanceId':'$U','addressId':'$U'," \
		"'status':'" st "','currency':'USDT','network':'tron','amount':'$M'," \
		"'fee':'1.00000000','tx':" tx ",'address':'$T','createdAt':'$D'}"
#define INVOICE	"{'invoiceId':'$U','status':'CREATED','link':" \
		"'https://pay.example.test/invoice/$U','currency':'USD','amount':'$M'," \
		"'receivedAmount':'0.00000000','description':'sim invoice'," \
		"'createdAt':'$D','expiresAt':'$D'}"
#define ASWAP	"{'id':'$U','clientId':'sim','status':'CREATED','currencyFrom':'ETH'," \
		"'currencyTo':'USDT','networkFrom':'ethereum','networkTo':'tron'," \
		"'amountFrom':'$M','amountTo':'$M','address':'$T','createdAt':'$D'}"
#define AWDRAW(st, extra) "{'id':'$U','status':'" st "','currency':'USDT'," \
		"'network':'tron','amount':'$M','feeAmount':'1.00000000','address':'$T'," \
		"'webhookUrl':null,'createdAt':'$D'" extra "}"
#define APPROVE	",'approveResult':{'approved':true,'apiKey':{'public':$p}," \
		"'request':{'ip':'127.0.0.1','userAgent':'ocp-sim'}}"
#define LIMIT	"{'min':'10.00000000','max':'100000.00000000'}"
#define BRIDGE	"{'id':'$U','clientId':null,'status':'CREATED','currency':'USDT'," \
		"'networkFrom':'ethereum','networkTo':'tron','amount':'$M'," \
		"'address':'$T','txFrom':null,'txTo':null,'createdAt':'$D'}"
#define SWAP	"{'id':'$U','clientId':null,'status':'CREATED','currencyFrom':'ETH'," \
		"'currencyTo':'USDT','networkFrom':'ethereum','networkTo':'tron'," \
		"'amountFrom':'1.00000000','amountTo':'2751.51000000','address':'$T'," \
		"'createdAt':'$D'}"
#define BLINK(st) "{'id':'$U','merchantId':'$U','clientId':'sim-client-1'," \
		"'clientEmail':'user@example.test','status':'" st "'," \
		"'link':'https://pay.example.test/billing/$U','address':'$A'," \
		"'currency':'USDT','network':'ethereum','createdAt':'$D'}"
#define SUB(st)	"{'id':'$U','billingLinkId':'$U','merchantId':'$U','status':'" st "'," \
		"'title':'Sim plan','amount':'$M','currency':'USD','spendInterval':30," \
		"'createdAt':'$D'}"
#define KYT	"{'status':'SUCCESS','riskLevel':'low','score':'0.05','alerts':[]," \
		"'address':'$A','network':'ethereum','currency':'USDT'}"
#define PARTNER_USER(pw) "{'id':'$U','email':'partner-user@example.test'," \
		"'password':" pw ",'createdAt':'$D'}"
#define ORG	"{'id':'$U','userId':'$U','name':'Sim Org','createdAt':'$D'}"
#define TARIFF	"{'id':'$U','action':'INTERNAL_TRANSFER','amount':'0.5','type':'PERCENT'," \
		"'minAmount':'1.00','maxAmount':'100.00','comment':null}"
#define APIKEY	"{'id':'$U','alias':'sim-key','public':'$K','secret':'$K','createdAt':'$D'}"
#define HOOK_BODY "'{\\'orderId\\':\\'$U\\',\\'status\\':\\'processed\\'," \
		"\\'amount\\':\\'$M\\'}'"
#define WEBHOOK	"{'id':'$U','event':'ORDER','eventId':'$U'," \
		"'requestUrl':'https://merchant.example.test/ocp-hook','requestBody':" \
		HOOK_BODY ",'responseCode':200,'responseStatus':'SUCCESS','sentAt':'$D'}"
#define ORPHAN	"{'id':'$U','status':'processed','currency':'USDT','network':'tron'," \
		"'amount':'$M','tx':'$H','address':'$T','stage':'DEPOSIT','createdAt':'$D'}"
#define BOOK	"{'id':'$U','address':'$A','alias':'sim','comment':null," \
		"'networks':['ethereum'],'createdAt':'$D'}"
#define FEETOK	"{'token':'$F','currency':'USDT','network':'tron','amount':'$M'," \
		"'fee':'1.00000000','expiresAt':'$D'}"

struct sim_template {
	const char	*path;
	const char	*json;
};

/* One template per catalogue path (checked at start-up). */
static const struct sim_template sim_templates[] = {
	{ "/api-gateway/test-signature", "{'checkSignatureResult':true,'errors':[]}" },
	{ "/api-gateway/available-currencies", "[{'currency':'USDT','alias':'Tether',"
	    "'allowDeposit':true,'allowWithdrawal':true,'priceUSD':'1.00000000',"
	    "'networks':[{'name':'tron','alias':'TRC20','contract':"
	    "'TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t','confirmations':20,"
	    "'withdrawalFee':'1.00000000','withdrawalMin':'10.00000000'}]},"
	    "{'currency':'ETH','alias':'Ethereum','allowDeposit':true,"
	    "'allowWithdrawal':true,'priceUSD':'2751.51000000','networks':[{'name':"
	    "'ethereum','alias':'ERC20','contract':null,'confirmations':12,"
	    "'withdrawalFee':'0.00300000','withdrawalMin':'0.01000000'}]}]" },
	{ "/api-gateway/price-rate", "'2751.51000000'" },
	{ "/api-gateway/find-tx", "{'orders':[" ORDER "],'withdrawals':[],"
	    "'personalDeposits':[],'orphanDeposits':[]}" },
	{ "/api-gateway/utils/validate-address", "{'valid':true,'address':'$T',"
	    "'network':'tron'}" },
	{ "/api-gateway/get-transaction-history", "{'transactions':[" TX "],"
	    "'total':1,'limit':100,'offset':0}" },
	{ "/api-gateway/advanced-balances", "[" ADV "]" },
	{ "/api-gateway/advanced-balance", ADV },
	{ "/api-gateway/advanced-balance-deposit-address", "{'advancedBalanceId':'$U',"
	    "'currency':'USDT','network':'tron','address':'$T','tag':null,"
	    "'amount':'$M','until':'$D'}" },
	{ "/api-gateway/addresses/find-by-id", ADDRESS },
	{ "/api-gateway/track-addresses/add-address", "{'id':'$U','address':'$T',"
	    "'network':'tron','webhookUrl':null,'createdAt':'$D'}" },
	{ "/api-gateway/addresses/find-by-address", "[" ADDRESS "]" },
	{ "/api-gateway/addresses/set-meta", ADDRESS },
	{ "/api-gateway/addresses/transactions", "{'transactions':[" TX "],'total':1}" },
	{ "/api-gateway/addresses/last-transaction", TX },
	{ "/api-gateway/account-addresses", "[" ADDRESS "," ADDRESS "]" },
	{ "/api-gateway/business-addresses", "[" ADDRESS "]" },
	{ "/api-gateway/recurrent-addresses", "[" ADDRESS "]" },
	{ "/api-gateway/payout-balances", "[" ADDRESS "]" },
	{ "/api-gateway/business-address", ADDRESS },
	{ "/api-gateway/create-payout-address", ADDRESS },
	{ "/api-gateway/personal-addresses/create-user", PUSER },
	{ "/api-gateway/personal-addresses/get-user-address", "{'id':'$U',"
	    "'userId':'$U','currency':'USDT','network':'tron','address':'$T',"
	    "'balance':'$M','isActive':true}" },
	{ "/api-gateway/personal-addresses/get-user-addresses", "[{'id':'$U',"
	    "'currency':'USDT','network':'tron','address':'$T','balance':'$M',"
	    "'isActive':true}]" },
	{ "/api-gateway/personal-addresses/get-user", PUSER },
	{ "/api-gateway/personal-addresses/add-trusted-address", TRUSTED },
	{ "/api-gateway/personal-addresses/get-trusted-addresses", "[" TRUSTED "]" },
	{ "/api-gateway/personal-addresses/del-trusted-address", "null" },
	{ "/api-gateway/make-order", ORDER },
	{ "/api-gateway/order", ORDER },
	{ "/api-gateway/orders", "{'orders':[" ORDER "],'total':1,'limit':100,"
	    "'offset':0}" },
	{ "/api-gateway/withdrawal-fee-token", FEETOK },
	{ "/api-gateway/make-withdrawal", WDRAW("processed", "'$H'") },
	{ "/api-gateway/make-withdrawal-async", WDRAW("pending", "null") },
	{ "/api-gateway/get-withdrawal", WDRAW("processed", "'$H'") },
	{ "/api-gateway/make-invoice", INVOICE },
	{ "/api-gateway/get-invoice", INVOICE },
	{ "/api-gateway/get-invoices", "{'invoices':[" INVOICE "],'total':1}" },
	{ "/api-gateway/auto-swaps/create", ASWAP },
	{ "/api-gateway/auto-swaps/get", ASWAP },
	{ "/api-gateway/auto-withdrawals/create", AWDRAW("CREATED", "") },
	{ "/api-gateway/auto-withdrawals/get", AWDRAW("APPROVED", APPROVE) },
	{ "/api-gateway/auto-withdrawals/approve", AWDRAW("APPROVED", APPROVE) },
	{ "/api-gateway/bridge/limit", LIMIT },
	{ "/api-gateway/bridge/fee-token", "{'token':'$F','currency':'USDT',"
	    "'networkFrom':'ethereum','networkTo':'tron','amount':'$M',"
	    "'blockchainFee':'2.10000000','serviceFee':'0.50000000','expiresAt':'$D'}" },
	{ "/api-gateway/bridge/create", BRIDGE },
	{ "/api-gateway/bridge/get", BRIDGE },
	{ "/api-gateway/swaps/limit", LIMIT },
	{ "/api-gateway/swaps/fee-token", "{'token':'$F','currencyFrom':'ETH',"
	    "'currencyTo':'USDT','networkFrom':'ethereum','networkTo':'tron',"
	    "'amountFrom':'1.00000000','amountTo':'2751.51000000',"
	    "'price':'2751.51000000','expiresAt':'$D'}" },
	{ "/api-gateway/swaps/create", SWAP },
	{ "/api-gateway/swaps/get", SWAP },
	{ "/api-gateway/recurrents/create-subscriber-billing-link", BLINK("PENDING") },
	{ "/api-gateway/recurrents/get-billing-link", BLINK("ACTIVE") },
	{ "/api-gateway/recurrents/get-billing-links-by-subscriber",
	    "[" BLINK("ACTIVE") "]" },
	{ "/api-gateway/recurrents/disable-subscriber-billing-link", BLINK("DISABLED") },
	{ "/api-gateway/recurrents/create-subscription", SUB("ACTIVE") },
	{ "/api-gateway/recurrents/get-subscription", SUB("ACTIVE") },
	{ "/api-gateway/recurrents/cancel-subscription", SUB("CANCELED") },
	{ "/api-gateway/recurrents/make-payment", "{'id':'$U','billingLinkId':'$U',"
	    "'status':'PENDING','amount':'$M','currency':'USD','createdAt':'$D'}" },
	{ "/api-gateway/kyt/check-transfer", "{'status':'SUCCESS','riskLevel':'low',"
	    "'score':'0.05','tx':'$H','network':'ethereum','currency':'USDT',"
	    "'alerts':[]}" },
	{ "/api-gateway/kyt/check-withdrawal-address", KYT },
	{ "/api-gateway/kyt/withdrawal-address-screening", KYT },
	{ "/partner/api/create-user", PARTNER_USER("'$P'") },
	{ "/partner/api/get-user", PARTNER_USER("null") },
	{ "/partner/api/get-users", "{'users':[" PARTNER_USER("null") "],'total':1}" },
	{ "/partner/api/create-user-organization", ORG },
	{ "/partner/api/get-user-organizations", "[" ORG "]" },
	{ "/partner/api/get-organization-advanced-balances", "[" ADV "]" },
	{ "/partner/api/top-up-advanced-balance", "{'advancedBalanceId':'$U',"
	    "'amount':'5.25','balance':'$M'}" },
	{ "/partner/api/get-default-tariffs", "[" TARIFF "]" },
	{ "/partner/api/set-organization-tariff", TARIFF },
	{ "/partner/api/get-organization-tariffs", "[" TARIFF "," TARIFF "]" },
	{ "/partner/api/create-api-keys", "{'id':'$U','alias':'sim-key','public':'$K',"
	    "'secret':'$K'}" },
	{ "/partner/api/get-api-keys", "{'keys':[" APIKEY "," APIKEY "]}" },
	{ "/partner/api/delete-api-keys", "null" },
	{ "/api-gateway/webhooks/get", WEBHOOK },
	{ "/api-gateway/webhooks/get-verbose", "{'id':'$U','event':'ORDER',"
	    "'eventId':'$U','requestUrl':'https://merchant.example.test/ocp-hook',"
	    "'requestHeaders':{'content-type':'application/json',"
	    "'x-api-public-key':$p,'x-api-signature':'$X'},'requestBody':" HOOK_BODY
	    ",'responseCode':200,'responseStatus':'SUCCESS','responseBody':"
	    "'{\\'ok\\':true,\\'token\\':\\'$X\\'}','sentAt':'$D','signature':'$X',"
	    "'apiKey':$p,'apiKeyAlias':'sim-key','createdAt':'$D','updatedAt':'$D'}" },
	{ "/api-gateway/orphan-deposits/get-deposit", ORPHAN },
	{ "/api-gateway/orphan-deposits/get-deposits", "{'deposits':[" ORPHAN "],"
	    "'total':1}" },
	{ "/api-gateway/orphan-deposits/withdrawal-token", FEETOK },
	{ "/api-gateway/orphan-deposits/withdrawal", "{'id':'$U','status':'PENDING',"
	    "'amount':'$M','fee':'1.00000000','address':'$T','createdAt':'$D'}" },
	{ "/api-gateway/address-book/add", BOOK },
	{ "/api-gateway/address-book/remove", "null" },
	{ "/api-gateway/address-book/update", BOOK },
	{ "/api-gateway/address-book/get", "{'addresses':[" BOOK "],'total':1}" },
};

static const char *
sim_template_for(const char *path)
{
	size_t	i;

	for (i = 0; i < sizeof(sim_templates) / sizeof(sim_templates[0]); i++)
		if (strcmp(sim_templates[i].path, path) == 0)
			return sim_templates[i].json;
	return NULL;
}

/* n random characters from alphabet into out (not terminated). */
static void
sim_rand_chars(char *out, size_t n, const char *alphabet)
{
	unsigned char	b[64];
	size_t		i, m = strlen(alphabet);

	if (n > sizeof(b))
		n = sizeof(b);
	if (RAND_bytes(b, (int)n) != 1)
		memset(b, 7, n);
	for (i = 0; i < n; i++)
		out[i] = alphabet[b[i] % m];
}

/* Append base64 of nbytes random bytes (nbytes <= 64). */
static void
sim_b64_rand(struct evbuffer *out, size_t nbytes)
{
	unsigned char	raw[64], enc[96];
	int		n;

	if (RAND_bytes(raw, (int)nbytes) != 1)
		memset(raw, 3, nbytes);
	n = EVP_EncodeBlock(enc, raw, (int)nbytes);
	evbuffer_add(out, enc, (size_t)n);
}

/* Append the value of placeholder c. */
static void
sim_placeholder(struct evbuffer *out, char c, const char *pub)
{
	char		buf[128];
	unsigned char	r[4];
	struct tm	tm;
	time_t		t;

	switch (c) {
	case 'U':
		sim_uuid(buf);
		evbuffer_add(out, buf, 36);
		break;
	case 'A':
		sim_hex_rand(buf, 20);
		evbuffer_add_printf(out, "0x%s", buf);
		break;
	case 'T':
		buf[0] = 'T';
		sim_rand_chars(buf + 1, 33, "123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
		    "abcdefghijkmnopqrstuvwxyz");
		evbuffer_add(out, buf, 34);
		break;
	case 'H':
		sim_hex_rand(buf, 32);
		evbuffer_add_printf(out, "0x%s", buf);
		break;
	case 'X':
		sim_hex_rand(buf, 32);
		evbuffer_add(out, buf, 64);
		break;
	case 'D':
		t = time(NULL);
		gmtime_r(&t, &tm);
		strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
		evbuffer_add(out, buf, strlen(buf));
		break;
	case 'M':
		if (RAND_bytes(r, sizeof(r)) != 1)
			memset(r, 1, sizeof(r));
		evbuffer_add_printf(out, "%u.%02u000000",
		    10u + (unsigned)(r[0] << 8 | r[1]) % 5000u, r[2] % 100u);
		break;
	case 'P':
		sim_hex_rand(buf, 12);
		evbuffer_add_printf(out, "sim-pw-%s", buf);
		break;
	case 'K':
		sim_b64_rand(out, 64);
		break;
	case 'F':
		evbuffer_add(out, "U2FsdGVkX1", 10);
		sim_b64_rand(out, 48);
		break;
	case 'p':
		sim_json_cstr(out, pub != NULL ? pub : "");
		break;
	default:
		evbuffer_add(out, &c, 1);
	}
}

/* Expand a template: ' becomes ", $x becomes a fresh value. */
static void
sim_expand(struct evbuffer *out, const char *t, const char *pub)
{
	const char	*run = t;

	for (; *t != '\0'; t++) {
		if (*t != '\'' && *t != '$')
			continue;
		evbuffer_add(out, run, (size_t)(t - run));
		if (*t == '\'')
			evbuffer_add(out, "\"", 1);
		else if (t[1] != '\0')
			sim_placeholder(out, *++t, pub);
		run = t + 1;
	}
	evbuffer_add(out, run, (size_t)(t - run));
}

/*
 * Append {"success":true,"response":...} for path.  pub is the caller's
 * public key (echoed where the API echoes it).  -1 if path has no template.
 */
int
sim_response(struct evbuffer *out, const char *path, const char *pub)
{
	const char	*t;

	if ((t = sim_template_for(path)) == NULL)
		return -1;
	evbuffer_add(out, "{\"success\":true,\"response\":", 27);
	sim_expand(out, t, pub);
	evbuffer_add(out, "}", 1);
	return 0;
}

/*
 * Start-up self-check: every catalogue path has a template whose expansion
 * is one valid JSON object.  Returns the number of problems (printed).
 */
int
sim_responses_check(void)
{
	struct evbuffer	*b;
	const char	*type;
	char		*nonce;
	size_t		 i;
	int		 bad = 0, has;

	for (i = 0; i < catalogue_count; i++) {
		if ((b = evbuffer_new()) == NULL)
			return 1;
		if (sim_response(b, catalogue_paths[i], "pub\"key") == -1) {
			fprintf(stderr, "ocp-sim: no template for %s\n",
			    catalogue_paths[i]);
			bad++;
		} else if (sim_json_scan(evbuffer_pullup(b, -1),
		    evbuffer_get_length(b), &nonce, &type, &has) == -1) {
			fprintf(stderr, "ocp-sim: template for %s is not JSON\n",
			    catalogue_paths[i]);
			bad++;
		} else
			free(nonce);
		evbuffer_free(b);
	}
	return bad;
}
