module github.com/tokenmeter/tokenmeter/alerter

go 1.26.0
