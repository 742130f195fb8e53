"""The currencies whose exponent the ledger knows when an account is created without one: ISO 4217's minor units."""

from __future__ import annotations

# ISO 4217's active codes (2024) with 2 minor units, then those with another number; codes without minor units (gold,
# silver, test codes) are not here: an account in them gives its exponent.
_TWO = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW
CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR
ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR
MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP
STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD YER ZAR ZMW ZWG ZWL
""".split()
_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split()
_THREE = "BHD IQD JOD KWD LYD OMR TND".split()
_FOUR = "CLF UYW".split()
# Not ISO 4217, common in ledgers: their smallest units (satoshi, wei, USDC's on-chain unit).
_OTHERS = {"BTC": 8, "ETH": 18, "USDC": 6}

EXPONENTS: dict[str, int] = {**dict.fromkeys(_TWO, 2), **dict.fromkeys(_ZERO, 0), **dict.fromkeys(_THREE, 3),
                             **dict.fromkeys(_FOUR, 4), **_OTHERS}
